"""ProxylessNAS architecture search on MindSpore. Options: see configs/search_default.yaml (and default_config.yaml)."""
import sys

from src.model_utils.cli import setup_logging
from src.errors import UserError


def main(argv=None) -> int:
    """Parse the search config, run the search; a UserError becomes one line and exit code 2."""
    setup_logging()
    from src.signals import route_sigint_to_python
    route_sigint_to_python()  # before MindSpore loads: see src/signals.py
    try:
        from src.model_utils.device import configure_environment
        from src.nas.config import get_search_config

        config = get_search_config(argv)
        configure_environment(config.device_target)
        from src.nas.search import search
        return search(config) or 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
