"""A Django project imported from the working directory (/app), like most
Django images: nothing is pip-installed, DJANGO_SETTINGS_MODULE=mysite.settings
names a module that only the working directory provides."""
