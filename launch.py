"""PT-MoE Studio entry point: ``python launch.py [--host 127.0.0.1] [--port 7860] [--auth user:pass] ...``

Binds 127.0.0.1 unless told otherwise; any other address needs ``--auth`` (or ``PTMOE_AUTH``). On a
Hugging Face Space (``SPACE_ID`` set) it binds 0.0.0.0 and starts in demo mode (limits on every knob,
GPU or not) unless the Space secret ``PTMOE_AUTH`` is set, in which case visitors log in instead.
``python launch.py --help`` lists every option and its environment variable.
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from app.settings import SettingsError, from_args

    try:
        settings = from_args(argv)
    except SettingsError as e:
        print(f"launch.py: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "alembic", "urllib3"):  # per-request and per-migration chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from app.main import close_context, create_context, launch

    try:
        ctx = create_context(settings)
    except Exception as e:  # an unusable database or folder: say which, no traceback
        print(f"launch.py: cannot start: {e}", file=sys.stderr)
        return 2
    where = f"http://{'localhost' if settings.host in ('127.0.0.1', '::1') else settings.host}:{settings.port}"
    mode = " (demo mode)" if settings.demo else ""
    print(f"PT-MoE Studio{mode}: {where} · database {ctx.storage.label} · runs in {ctx.studio.runs_dir} · "
          f"data folder {ctx.studio.data_dir}", file=sys.stderr)
    try:
        launch(ctx)
    except KeyboardInterrupt:
        pass
    except OSError as e:  # the port is taken, or the address is not this machine's
        print(f"launch.py: cannot listen on {settings.host}:{settings.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        close_context(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
