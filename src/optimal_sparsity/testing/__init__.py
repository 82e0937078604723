"""Stand-ins the tests use in place of outside services: ``local_hub``, a small HTTP server
speaking the hub endpoints ``huggingface_hub`` uses (``HF_ENDPOINT``). ``gpu_check`` serves
its exported model through it too, so the pull-mode step runs without the real hub."""
