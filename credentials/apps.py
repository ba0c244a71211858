from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    name = "credentials"
    verbose_name = "Credential vault"

    def ready(self) -> None:
        from credentials import services, vault
        from credentials.dashboard import register
        from tenants import events

        events.on_membership_ended(services.on_membership_ended)
        for model_label, field, purpose in (
            ("credentials.OAuthProvider", "client_secret_blob", services.CLIENT_SECRET_PURPOSE),
            ("credentials.Connection", "access_token_blob", services.ACCESS_PURPOSE),
            ("credentials.Connection", "refresh_token_blob", services.REFRESH_PURPOSE),
            (
                "credentials.PendingAuthorization",
                "code_verifier_blob",
                services.VERIFIER_PURPOSE,
            ),
        ):
            vault.register_encrypted_field(model_label=model_label, field=field, purpose=purpose)
        register()
