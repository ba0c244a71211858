"""One env-driven settings module for every run mode.

Trial (the default): SQLite file, a local filesystem Celery broker, locmem cache, DEBUG on.
Production: set DEBUG=false, SECRET_KEY, DATABASE_URL (Postgres), REDIS_URL, ALLOWED_HOSTS.
"""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", default=True)
TESTING = env_bool("TESTING", default=False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off: set SECRET_KEY or SECRET_KEY_FILE "
            "to a long random string (python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    # A fixed development key: never used in production because DEBUG=false requires SECRET_KEY.
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The public base URL (used in links we hand out: invitations, consent URLs, MCP endpoints).
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    # The product's apps, in layering order (a lower app never imports a higher one).
    "tenants",
    "audit",
    "credentials",
    "catalog",
    "policies",
    "gateway",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "audit.middleware.RequestContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenants.context_processors.current_org",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'gateway.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
}
DB_VENDOR = "postgresql" if DATABASES["default"]["ENGINE"].endswith("postgresql") else "sqlite"
if DB_VENDOR == "sqlite":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # WAL and a busy timeout let the web process, the worker and beat share one SQLite file.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, Redis, Celery -------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "mgw"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Periodic tasks; each app adds its entries (name -> {"task": ..., "schedule": seconds}).
CELERY_BEAT_SCHEDULE: dict[str, dict] = {}

# --- Auth -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "tenants.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "tenants:home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "none")
ACCOUNT_UNIQUE_EMAIL = True
# Sign-up is by invitation only: an organization's admins invite people.
ACCOUNT_ADAPTER = "tenants.adapters.InvitationOnlyAccountAdapter"
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env_str("MFA_TOTP_ISSUER", "MCP Gateway")

# Django 6.1 mailers. The trial prints mail (invitations) to the console; set MAIL_BACKEND to
# django.core.mail.backends.smtp.EmailBackend and MAIL_OPTIONS_* for a real server.
MAILERS = {
    "default": {
        "BACKEND": env_str("MAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"),
        "OPTIONS": {
            key: value
            for key, value in {
                "host": env_str("MAIL_HOST"),
                "port": env_int("MAIL_PORT", 0) or None,
                "username": env_str("MAIL_USERNAME"),
                "password": env_str("MAIL_PASSWORD"),
                "use_tls": env_bool("MAIL_USE_TLS", default=False) or None,
            }.items()
            if value
        },
    }
}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "gateway@localhost")
INVITATION_TTL_HOURS = env_int("INVITATION_TTL_HOURS", 72)

# --- Security -------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)

# Request bodies: the REST API and forms never need more than this.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.api.authentication.PersonalAccessTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "tenants.api.errors.api_exception_handler",
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MCP Governance Gateway API",
    "DESCRIPTION": "Catalog, policies, credentials and audit for an organization's MCP servers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "InvitationStatusEnum": "tenants.api.serializers.INVITATION_STATUSES",
        "SecretStatusEnum": "tenants.api.serializers.SECRET_STATUSES",
        "ServerStatusEnum": "catalog.models.ServerStatus",
        "VersionStatusEnum": "catalog.models.VersionStatus",
    },
}

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves static files from the app process (uvicorn does not); in a trial it reads them
# straight from the apps, in production from STATIC_ROOT after `collectstatic`.
WHITENOISE_USE_FINDERS = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging: structured lines, never secrets -----------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "audit.logging.RequestContextFilter"}},
    "formatters": {
        "json": {"()": "audit.logging.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_context"],
            "formatter": env_str("LOG_FORMAT", "plain"),
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Product settings -----------------------------------------------------------------------
# Agent keys and personal access tokens: shown once, stored as prefix + SHA-256.
AGENT_KEY_DEFAULT_TTL_DAYS = env_int("AGENT_KEY_DEFAULT_TTL_DAYS", 90)
# Last-used timestamps are written at most this often per key (seconds), to keep the hot path cheap.
KEY_LAST_USED_RESOLUTION = env_float("KEY_LAST_USED_RESOLUTION", 60.0)

# --- Trial-mode demo ------------------------------------------------------------------------
# Where `python -m demo.servers` serves the demo upstreams (tickets, chat) in the trial run.
DEMO_UPSTREAM_URL = env_str("DEMO_UPSTREAM_URL", "http://127.0.0.1:8765").rstrip("/")

# --- Credentials: vault and OAuth connections -----------------------------------------------
# Master keys wrapping each organization's data key: "id:base64key" entries (32 random bytes),
# comma or newline separated, from VAULT_MASTER_KEYS or VAULT_MASTER_KEYS_FILE. The first one
# wraps new keys, all of them unwrap; keep an old key listed until `vault_rotate` finished.
# Without any, DEBUG/trial mode derives a development key from SECRET_KEY (with a warning).
VAULT_MASTER_KEYS = [k for k in env_str("VAULT_MASTER_KEYS").replace(",", " ").split() if k]
if not VAULT_MASTER_KEYS and not DEBUG:
    raise ImproperlyConfigured(
        "VAULT_MASTER_KEYS is required when DEBUG is off: set VAULT_MASTER_KEYS or "
        "VAULT_MASTER_KEYS_FILE to 'id:base64key' entries "
        "(generate one with `manage.py vault_new_master_key <id>`)."
    )
# Decided here, from the real DEBUG (test runners turn DEBUG off at run time).
VAULT_ALLOW_DEV_KEY = DEBUG and not VAULT_MASTER_KEYS
# Rows re-encrypted per batch by `vault_rotate --reencrypt` (each batch is one transaction).
VAULT_ROTATE_BATCH_SIZE = env_int("VAULT_ROTATE_BATCH_SIZE", 500)
# Provider URLs are untrusted: private, loopback and link-local addresses are refused unless
# this is on (the trial's demo provider runs on loopback, so it defaults to DEBUG).
CREDENTIALS_ALLOW_PRIVATE_URLS = env_bool("CREDENTIALS_ALLOW_PRIVATE_URLS", default=DEBUG)
CREDENTIALS_HTTP_TIMEOUT = env_float("CREDENTIALS_HTTP_TIMEOUT", 10.0)
# Tokens expiring within this many seconds are refreshed by the every-minute worker.
CREDENTIALS_REFRESH_WINDOW_SECONDS = env_int("CREDENTIALS_REFRESH_WINDOW_SECONDS", 300)
# How long a started "Connect" (state + PKCE verifier) stays usable.
CREDENTIALS_AUTHORIZATION_TTL_SECONDS = env_int("CREDENTIALS_AUTHORIZATION_TTL_SECONDS", 600)
CELERY_BEAT_SCHEDULE["credentials-refresh-expiring"] = {
    "task": "credentials.tasks.refresh_expiring_connections_task",
    "schedule": 60.0,
}
# Re-enqueues a vault rotation whose worker died (no progress for two minutes).
CELERY_BEAT_SCHEDULE["credentials-vault-rotation-watchdog"] = {
    "task": "credentials.tasks.vault_rotation_watchdog_task",
    "schedule": 300.0,
}

# --- Catalog --------------------------------------------------------------------------------
# Timeouts (seconds) for talking to upstream MCP servers when fetching their tools.
CATALOG_CONNECT_TIMEOUT = env_float("CATALOG_CONNECT_TIMEOUT", 10.0)
CATALOG_FETCH_TIMEOUT = env_float("CATALOG_FETCH_TIMEOUT", 30.0)
# Caps on what an upstream may hand us: bad or hostile servers get a clear error, not our memory.
CATALOG_MAX_TOOLS = env_int("CATALOG_MAX_TOOLS", 1000)
CATALOG_MAX_LIST_PAGES = env_int("CATALOG_MAX_LIST_PAGES", 50)
CATALOG_MAX_DESCRIPTION_CHARS = env_int("CATALOG_MAX_DESCRIPTION_CHARS", 20_000)
CATALOG_MAX_SCHEMA_BYTES = env_int("CATALOG_MAX_SCHEMA_BYTES", 64 * 1024)
CATALOG_MAX_RESPONSE_BYTES = env_int("CATALOG_MAX_RESPONSE_BYTES", 8 * 1024 * 1024)
# SSRF guard: upstream URLs resolving to private / loopback / link-local addresses are refused
# unless the operator allows them (a trial on one machine needs loopback).
CATALOG_ALLOW_PRIVATE_NETWORKS = env_bool("CATALOG_ALLOW_PRIVATE_NETWORKS", default=False)
CATALOG_ALLOW_LOOPBACK = env_bool("CATALOG_ALLOW_LOOPBACK", default=DEBUG)
# stdio servers run under bubblewrap; without it they are refused (production) or warned about.
CATALOG_REQUIRE_SANDBOX = env_bool("CATALOG_REQUIRE_SANDBOX", default=not DEBUG)
CATALOG_SANDBOX_BWRAP = env_str("CATALOG_SANDBOX_BWRAP", "bwrap")
# Extra read-only paths visible inside the sandbox (the interpreter's prefix is always bound).
CATALOG_SANDBOX_RO_PATHS = env_list("CATALOG_SANDBOX_RO_PATHS", [])
CATALOG_SANDBOX_MEMORY_MB = env_int("CATALOG_SANDBOX_MEMORY_MB", 4096)
CATALOG_SANDBOX_CPU_SECONDS = env_int("CATALOG_SANDBOX_CPU_SECONDS", 3600)
CATALOG_SANDBOX_MAX_PROCESSES = env_int("CATALOG_SANDBOX_MAX_PROCESSES", 256)
CATALOG_SANDBOX_MAX_FILES = env_int("CATALOG_SANDBOX_MAX_FILES", 1024)
# Drift detection: how often approved servers' tools are re-fetched, and how many per run.
CATALOG_SYNC_INTERVAL = env_int("CATALOG_SYNC_INTERVAL", 900)
CATALOG_SYNC_BATCH = env_int("CATALOG_SYNC_BATCH", 50)
CELERY_BEAT_SCHEDULE["catalog-sync-approved-servers"] = {
    "task": "catalog.tasks.sync_due_servers_task",
    "schedule": float(CATALOG_SYNC_INTERVAL),
}

# --- Audit ------------------------------------------------------------------------------------
# Sealing: rows are chained into per-org hash seals once older than the lag (so a transaction that
# took an id earlier cannot commit into a sealed range), in batches, by a beat task.
AUDIT_SEAL_INTERVAL_SECONDS = env_int("AUDIT_SEAL_INTERVAL_SECONDS", 300)
AUDIT_SEAL_LAG_SECONDS = env_int("AUDIT_SEAL_LAG_SECONDS", 60)
AUDIT_SEAL_BATCH_SIZE = env_int("AUDIT_SEAL_BATCH_SIZE", 5000)
AUDIT_SEAL_MAX_BATCHES = env_int("AUDIT_SEAL_MAX_BATCHES", 20)
# A row dated further back than this before an earlier row is reported as inserted out of order.
AUDIT_CLOCK_TOLERANCE_SECONDS = env_int("AUDIT_CLOCK_TOLERANCE_SECONDS", 300)
# The audit page and API: the widest time range a filter may ask for, and a statement timeout
# (Postgres) so no filter combination can run an unbounded query.
AUDIT_MAX_RANGE_DAYS = env_int("AUDIT_MAX_RANGE_DAYS", 400)
AUDIT_QUERY_TIMEOUT_MS = env_int("AUDIT_QUERY_TIMEOUT_MS", 5000)
AUDIT_EXPORT_CHUNK_SIZE = env_int("AUDIT_EXPORT_CHUNK_SIZE", 2000)
# Retention purge runs daily; each run removes at most this many rows per organization.
AUDIT_PURGE_INTERVAL_SECONDS = env_int("AUDIT_PURGE_INTERVAL_SECONDS", 24 * 3600)
AUDIT_PURGE_MAX_ROWS = env_int("AUDIT_PURGE_MAX_ROWS", 50_000)
# Metrics rollups from `tool.call` rows.
AUDIT_ROLLUP_INTERVAL_SECONDS = env_int("AUDIT_ROLLUP_INTERVAL_SECONDS", 60)
AUDIT_ROLLUP_BATCH_SIZE = env_int("AUDIT_ROLLUP_BATCH_SIZE", 10_000)
# /metrics (Prometheus) answers 404 unless a bearer token is configured.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_MAX_SERIES = env_int("METRICS_MAX_SERIES", 200)
CELERY_BEAT_SCHEDULE["audit-seal"] = {
    "task": "audit.tasks.audit_seal_task",
    "schedule": float(AUDIT_SEAL_INTERVAL_SECONDS),
}
CELERY_BEAT_SCHEDULE["audit-rollup"] = {
    "task": "audit.tasks.audit_rollup_task",
    "schedule": float(AUDIT_ROLLUP_INTERVAL_SECONDS),
}
CELERY_BEAT_SCHEDULE["audit-purge"] = {
    "task": "audit.tasks.audit_purge_task",
    "schedule": float(AUDIT_PURGE_INTERVAL_SECONDS),
}

# --- Tracing ----------------------------------------------------------------------------------
# OpenTelemetry tracing of the gateway pipeline (gateway/tracing.py, docs/gateway.md "Tracing"):
# off unless an OTLP/HTTP endpoint is set. The base endpoint gets /v1/traces appended; the traces
# endpoint is used as given. The exporter also reads OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, etc.
OTEL_EXPORTER_OTLP_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT")
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "mcp-gateway")
# Send the trace context (W3C traceparent in params._meta) to upstream MCP servers: they are third
# parties, so only when the operator says so.
GATEWAY_TRACE_PROPAGATE_UPSTREAM = env_bool("GATEWAY_TRACE_PROPAGATE_UPSTREAM", default=False)
