"""pyinfra settings for the deploy (read from the working folder): every operation as root."""

from pyinfra import config

config.SUDO = True
