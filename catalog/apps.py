from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from catalog.dashboard import panel_context
        from catalog.secrets import ENV_PURPOSE, HEADERS_PURPOSE
        from credentials.vault import register_encrypted_field
        from tenants.dashboard import Panel, register_panel

        register_panel(Panel("catalog", "catalog/dashboard_panel.html", 20, panel_context))
        # The consent and connections pages say which servers use a provider's grant.
        from catalog.selectors import provider_usage
        from credentials.usage import register_usage_describer

        register_usage_describer(provider_usage)
        # So that vault key rotation re-encrypts the servers' secrets too.
        register_encrypted_field(
            model_label="catalog.Server", field="static_headers_blob", purpose=HEADERS_PURPOSE
        )
        register_encrypted_field(
            model_label="catalog.Server", field="env_blob", purpose=ENV_PURPOSE
        )
