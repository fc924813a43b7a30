"""Stack: the processes of a running installation and how they are kept alive. supervisord's
programs and client, starting and stopping the stack in order (`webtv up`, `webtv down`),
starting and stopping playouts, nginx with the RTMP module, the embedded S3, the Dagster
instance, the Celery worker, systemd units, process helpers, alert delivery, and the watchdog
with the metrics and health it serves to monitoring tools."""
