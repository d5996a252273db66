SECRET_KEY = "runtime-matrix-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
# /items answers with this: proof that these settings, not empty defaults, are in use.
CXTM_SETTINGS = "mysite.settings"
