from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        # tenants sits below audit in the layering, so it cannot import us: we hand it our recorder.
        from audit.services import record
        from tenants.events import register_recorder

        register_recorder(record)
