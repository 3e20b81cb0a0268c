"""Commands that change a VM or record a host: run-VM (``start``) and the recorder."""
