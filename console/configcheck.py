"""``vsm-console config check FILE``: every problem in a config file, or "ok".

The daemon runs the same check before it starts (:func:`refuse_bad_file`), so
a node refuses a bad file with exactly the messages this command prints.
"""

from __future__ import annotations

import argparse
import os
import sys

from node.configcheck import Problem, check_cookie_file, check_file

EXIT_OK = 0
EXIT_PROBLEMS = 1


def format_problems(path: str, problems: list[Problem]) -> list[str]:
    return [f"{path}: {problem}" for problem in problems]


def main(path: str) -> int:
    problems = check_file(path)
    if not problems:
        print(f"{path}: ok")
        return EXIT_OK
    for line in format_problems(path, problems):
        print(line)
    count = len(problems)
    print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
    return EXIT_PROBLEMS


def refuse_bad_file(path: str) -> bool:
    """Print the file's problems to stderr; True if there were any (do not start)."""
    problems = check_file(path)
    for line in format_problems(path, problems):
        print(f"vsm-console: bad configuration: {line}", file=sys.stderr)
    return bool(problems)


def refuse_bad_cookie_file(path: str, where: str) -> bool:
    """The cookie file named by a flag or VSM_COOKIE_FILE: print its problems; True if any."""
    problems = check_cookie_file(path, where)
    for problem in problems:
        print(f"vsm-console: bad configuration: {problem}", file=sys.stderr)
    return bool(problems)


def refuse_bad_cookie_source(args: argparse.Namespace) -> bool:
    """A cookie file from a flag or VSM_COOKIE_FILE gets the same checks as one in a file."""
    if args.cookie_file:
        return refuse_bad_cookie_file(args.cookie_file, "--cookie-file")
    env_file = os.environ.get("VSM_COOKIE_FILE")
    if env_file and not args.cookie:
        return refuse_bad_cookie_file(env_file, "VSM_COOKIE_FILE")
    return False
