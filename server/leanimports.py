"""Two optional imports of our dependencies that the server never uses, kept out of its memory.

The Pi's budget is 40 MB of RSS for the idle server. Both modules below are optional in the library that
imports them (it has a documented fallback for their absence), and Homeboard never takes the path that needs
them; together they cost about 3 MB. Marking a module as None in sys.modules is the import system's own way
to say "not available": `import` then raises ImportError, which these libraries catch. Imported by
server/__init__.py, so it runs before anything of ours imports requests or tornado.

- charset_normalizer (≈ 2.8 MB): requests imports it at import time only to guess the encoding of
  `Response.text` (`apparent_encoding`). Every poller parses the body bytes itself (server/sources/http/,
  HttpResponse.json); without a detector requests decodes `.text` as UTF-8, its own fallback.
- curses (≈ 0.4 MB with libncursesw and libtinfo): tornado.log imports it only to colour a terminal in its
  LogFormatter; the server logs through logging.basicConfig (server/__main__.py).

A process that imported either module before importing `server` keeps it (setdefault).
"""

from __future__ import annotations

import sys
import warnings

UNUSED_OPTIONAL_MODULES = ("charset_normalizer", "curses")

for _name in UNUSED_OPTIONAL_MODULES:
    sys.modules.setdefault(_name, None)  # type: ignore[arg-type]

# requests says once, at import, that it found no detector: expected here, not a fault to log.
warnings.filterwarnings("ignore", message="Unable to find acceptable character detection dependency")
