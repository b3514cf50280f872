"""The job engine: every operation runs as a job that any front end can watch."""

import logging

# Library practice: silent unless a front end configures logging (the daemon writes JSON
# lines to stderr); without this, Python's last-resort handler would print warnings into
# the CLI's output.
logging.getLogger("axisor").addHandler(logging.NullHandler())
