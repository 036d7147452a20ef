"""stamp.py STABLE_STATUS OUT KEY=VALUE...: write KEY=VALUE lines, {NAME} from the status file."""

import re
import sys


def main() -> int:
    status_path, out = sys.argv[1], sys.argv[2]
    status = {}
    with open(status_path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition(" ")
            status[key] = value
    lines = [
        re.sub(r"\{([A-Z0-9_]+)\}", lambda m: status.get(m.group(1)) or "unknown", kv)
        for kv in sys.argv[3:]
    ]
    with open(out, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
