from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from portal.pgtypes import use_c_timestamps

        connection_created.connect(use_c_timestamps, dispatch_uid="tweezer-c-timestamps")
