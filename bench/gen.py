#!/usr/bin/env python3
"""Generate the benchmark data set (limits.md section 2), reproducibly.

    python3 bench/gen.py OUT_DIR [--scale 1.0] [--seed 1] [--jobs 2] [--dump-parts 1]

At scale 1.0 the data set is about 1.39 GB in about 22,050 files:

  db/pg_dump.sql   1 file,  ~600 MB  pg_dump-style COPY data (users, orders, events)
  logs/**.log      2,000 files, ~435 MB app and nginx logs, lognormal sizes 30 KB-2.6 MB
  bin/*.bin        50 files, ~300 MB random bytes (~6 MB each)
  conf/**          20,000 JSON/INI/YAML files of 512-8191 B in ~1,100 directories

--scale multiplies the byte totals and the file/directory counts (sizes of the
individual small files keep their distribution).  Output is deterministic
byte-for-byte for a given (scale, seed) and Python version (3.11): every part
uses its own random.Random seeded from a string, so the parallel split
(--jobs) does not change the bytes.  Output is streamed in blocks of ~1 MB;
no file is held in memory whole.  Pure stdlib.

--dump-parts N writes the dump as N equal files db/pg_dump-NN.sql, each with its own
rows: a set N times bigger keeps the file sizes of the smaller one (bench/growth.py).
1, the default, keeps db/pg_dump.sql and its bytes.

The generator functions are also used by churn.py (same directory).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import math
import os
import random
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor

# ---------------------------------------------------------------------------
# Sizes at scale 1.0 (limits.md section 2)
SQL_BYTES = 600_756_149
LOG_COUNT = 2_000
LOG_BYTES = 435_244_061
LOG_MIN, LOG_MAX, LOG_MEDIAN = 30_000, 2_600_000, 141_000
BIN_COUNT = 50
BIN_BYTES = 299_999_973
CONF_COUNT = 20_000
CONF_DIRS = 1_100
CONF_MIN, CONF_MAX, CONF_MEDIAN = 512, 8_191, 2_035
CONF_MEAN = 2_745
CONF_BYTES = 54_909_612

# table shares of the SQL dump (by bytes)
SQL_SHARES = (("users", 0.15), ("orders", 0.25), ("events", 0.60))

LOG_SERVICES = (
    "api",
    "auth",
    "billing",
    "search",
    "worker",
    "scheduler",
    "gateway",
    "notifications",
    "nginx",
    "nginx-edge",
)

BLOCK = 1 << 20  # target bytes of text generated per block

# ---------------------------------------------------------------------------
# Shared vocabularies (deterministic, built once per process)

_SYL = (
    "ka",
    "lo",
    "mi",
    "ne",
    "ra",
    "to",
    "su",
    "vi",
    "an",
    "el",
    "or",
    "in",
    "da",
    "pe",
    "ti",
    "ko",
    "ma",
    "ul",
    "es",
    "ba",
    "ri",
    "go",
    "sh",
    "th",
    "er",
    "al",
    "on",
    "ze",
    "qu",
    "wy",
    "fo",
    "ch",
)
_COMMON = (
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "on",
    "with",
    "as",
    "order",
    "user",
    "payment",
    "account",
    "shipping",
    "item",
    "product",
    "service",
    "request",
    "error",
    "update",
    "customer",
    "delivery",
    "refund",
    "invoice",
    "cart",
    "session",
    "price",
    "status",
    "new",
    "please",
    "thanks",
    "great",
    "quality",
    "fast",
    "good",
    "box",
    "size",
    "color",
    "return",
    "received",
    "week",
    "day",
    "support",
)
FIRST = (
    "james",
    "mary",
    "john",
    "patricia",
    "robert",
    "jennifer",
    "michael",
    "linda",
    "william",
    "elizabeth",
    "david",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "chris",
    "nancy",
    "daniel",
    "lisa",
    "matthew",
    "betty",
    "anthony",
    "margaret",
    "mark",
    "sandra",
    "donald",
    "ashley",
    "steven",
    "kimberly",
    "paul",
    "emily",
    "andrew",
    "donna",
    "joshua",
    "michelle",
    "kenneth",
    "carol",
    "kevin",
    "amanda",
    "brian",
    "melissa",
    "george",
    "deborah",
    "timothy",
    "stephanie",
    "ronald",
    "rebecca",
    "edward",
    "sharon",
    "jason",
    "laura",
    "jeffrey",
    "cynthia",
    "ryan",
    "kathleen",
    "jacob",
    "amy",
    "gary",
    "angela",
    "nicholas",
    "shirley",
    "eric",
    "anna",
    "jonathan",
    "brenda",
    "stephen",
    "pamela",
    "larry",
    "emma",
    "justin",
    "nicole",
    "scott",
    "helen",
    "brandon",
    "samantha",
    "benjamin",
    "katherine",
    "samuel",
    "christine",
    "gregory",
    "debra",
    "alexander",
    "rachel",
    "frank",
    "carolyn",
    "patrick",
    "janet",
    "raymond",
    "catherine",
    "jack",
    "maria",
    "dennis",
    "heather",
    "jerry",
    "diane",
    "tyler",
    "ruth",
    "aaron",
    "julie",
    "jose",
    "olivia",
    "adam",
    "joyce",
    "nathan",
    "virginia",
    "henry",
    "victoria",
    "douglas",
    "kelly",
    "zachary",
    "lauren",
    "peter",
    "christina",
    "kyle",
    "joan",
    "ethan",
    "evelyn",
    "walter",
    "judith",
    "noah",
    "megan",
    "jeremy",
    "andrea",
    "christian",
    "cheryl",
    "keith",
    "hannah",
    "roger",
    "jacqueline",
    "terry",
    "martha",
    "gerald",
    "gloria",
    "harold",
    "teresa",
    "sean",
    "ann",
    "austin",
    "sara",
    "carl",
    "madison",
    "arthur",
    "frances",
    "lawrence",
    "kathryn",
    "dylan",
    "janice",
    "jesse",
    "jean",
    "jordan",
    "abigail",
    "bryan",
    "alice",
    "billy",
    "judy",
    "joe",
    "sophia",
    "bruce",
    "grace",
    "gabriel",
    "denise",
    "logan",
    "amber",
    "albert",
    "doris",
    "willie",
    "marilyn",
    "alan",
    "danielle",
    "juan",
    "beverly",
    "wayne",
    "isabella",
    "elijah",
    "theresa",
    "randy",
    "diana",
    "roy",
    "natalie",
    "vincent",
    "brittany",
    "ralph",
    "charlotte",
    "eugene",
    "marie",
    "russell",
    "kayla",
    "bobby",
    "alexis",
    "mason",
    "lori",
    "philip",
    "louis",
)
LAST = (
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "torres",
    "nguyen",
    "hill",
    "flores",
    "green",
    "adams",
    "nelson",
    "baker",
    "hall",
    "rivera",
    "campbell",
    "mitchell",
    "carter",
    "roberts",
    "gomez",
    "phillips",
    "evans",
    "turner",
    "diaz",
    "parker",
    "cruz",
    "edwards",
    "collins",
    "reyes",
    "stewart",
    "morris",
    "morales",
    "murphy",
    "cook",
    "rogers",
    "gutierrez",
    "ortiz",
    "morgan",
    "cooper",
    "peterson",
    "bailey",
    "reed",
    "kelly",
    "howard",
    "ramos",
    "kim",
    "cox",
    "ward",
    "richardson",
    "watson",
    "brooks",
    "chavez",
    "wood",
    "james",
    "bennett",
    "gray",
    "mendoza",
    "ruiz",
    "hughes",
    "price",
    "alvarez",
    "castillo",
    "sanders",
    "patel",
    "myers",
    "long",
    "ross",
    "foster",
    "jimenez",
    "powell",
    "jenkins",
    "perry",
    "russell",
    "sullivan",
    "bell",
    "coleman",
    "butler",
    "henderson",
    "barnes",
    "gonzales",
    "fisher",
    "vasquez",
    "simmons",
    "romero",
    "jordan",
    "patterson",
    "alexander",
    "hamilton",
    "graham",
    "reynolds",
    "griffin",
    "wallace",
    "moreno",
    "west",
    "cole",
    "hayes",
    "bryant",
    "herrera",
    "gibson",
    "ellis",
    "tran",
    "medina",
    "aguilar",
    "stevens",
    "murray",
    "ford",
    "castro",
    "marshall",
    "owens",
    "harrison",
    "fernandez",
    "mcdonald",
    "woods",
    "washington",
    "kennedy",
    "wells",
    "vargas",
    "henry",
    "chen",
    "freeman",
    "webb",
    "tucker",
    "guzman",
    "burns",
    "crawford",
    "olson",
    "simpson",
    "porter",
    "hunter",
    "gordon",
    "mendez",
    "silva",
    "shaw",
    "snyder",
    "mason",
    "dixon",
    "munoz",
    "hunt",
    "hicks",
    "holmes",
    "palmer",
    "wagner",
    "black",
    "robertson",
    "boyd",
    "rose",
    "stone",
    "salazar",
    "fox",
    "warren",
    "mills",
    "meyer",
    "rice",
    "schmidt",
    "garza",
    "daniels",
    "ferguson",
    "nichols",
    "stephens",
    "soto",
    "weaver",
    "ryan",
    "gardner",
    "payne",
    "grant",
    "dunn",
    "kelley",
    "spencer",
    "hawkins",
    "arnold",
    "pierce",
    "vazquez",
    "hansen",
    "peters",
    "santos",
    "hart",
    "bradley",
    "knight",
    "elliott",
)
DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "icloud.com",
    "proton.me",
    "aol.com",
    "gmx.de",
    "web.de",
    "mail.ru",
    "yandex.ru",
    "example.com",
    "example.org",
    "acme.io",
    "contoso.com",
    "fabrikam.net",
    "initech.com",
    "globex.com",
    "umbrella.co",
    "hooli.xyz",
    "orange.fr",
    "free.fr",
    "libero.it",
    "t-online.de",
    "qq.com",
    "163.com",
    "naver.com",
    "rediffmail.com",
    "btinternet.com",
    "comcast.net",
)
COUNTRIES = (
    "US",
    "DE",
    "FR",
    "GB",
    "IT",
    "ES",
    "NL",
    "PL",
    "SE",
    "BR",
    "CA",
    "MX",
    "IN",
    "JP",
    "CN",
    "KR",
    "AU",
    "NZ",
    "ZA",
    "AR",
    "CH",
    "AT",
    "BE",
    "DK",
    "NO",
    "FI",
    "IE",
    "PT",
    "CZ",
    "RO",
    "HU",
    "GR",
    "TR",
    "RU",
    "UA",
    "IL",
    "AE",
    "SG",
    "HK",
    "TW",
)
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK", "PLN", "BRL")
ORDER_STATUS = ("pending", "paid", "shipped", "delivered", "cancelled", "refunded", "processing", "on_hold")
EVENT_TYPES = (
    "page_view",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "checkout_started",
    "checkout_completed",
    "login",
    "logout",
    "search",
    "product_view",
    "signup",
    "password_reset",
    "payment_failed",
    "payment_succeeded",
    "review_posted",
    "wishlist_add",
    "coupon_applied",
    "session_start",
    "session_end",
    "api_call",
    "email_opened",
    "email_clicked",
    "push_received",
    "settings_changed",
    "address_added",
    "shipment_tracked",
)
PLATFORMS = ("web", "ios", "android", "api", "desktop")
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.72",
    "curl/8.4.0",
    "python-requests/2.31.0",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
    "PostmanRuntime/7.35.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)
HTTP_METHODS = ("GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD")
HTTP_STATUS = (200, 200, 200, 200, 200, 200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 404, 409, 429, 500, 502, 503)
API_PATHS = (
    "/api/v1/orders",
    "/api/v1/users",
    "/api/v1/products",
    "/api/v1/cart",
    "/api/v1/checkout",
    "/api/v1/search",
    "/api/v2/events",
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/payments",
    "/api/v1/shipments",
    "/api/v1/reviews",
    "/api/v1/coupons",
    "/api/v1/wishlist",
    "/healthz",
    "/metrics",
    "/static/js/app.js",
    "/static/css/main.css",
    "/favicon.ico",
    "/images/products",
    "/api/v1/notifications",
    "/api/v1/settings",
)
LOG_LEVELS = ("INFO",) * 14 + ("DEBUG",) * 8 + ("WARN",) * 3 + ("ERROR",)
LOG_MESSAGES = (
    "request completed",
    "request started",
    "cache miss",
    "cache hit",
    "db query executed",
    "job enqueued",
    "job finished",
    "retrying request",
    "connection pool exhausted",
    "token refreshed",
    "user authenticated",
    "payment authorized",
    "payment declined",
    "webhook delivered",
    "rate limit exceeded",
    "slow query detected",
    "message published",
    "message consumed",
    "scheduled task triggered",
    "config reloaded",
    "upstream timeout",
    "validation failed",
    "order state changed",
    "email sent",
    "session expired",
    "invalid signature",
)


def _words(n: int, seed: str) -> list[str]:
    r = random.Random(seed)
    out = list(_COMMON)
    seen = set(out)
    while len(out) < n:
        w = "".join(r.choice(_SYL) for _ in range(r.choice((1, 2, 2, 2, 3, 3, 3, 4))))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


VOCAB = _words(30_000, "vocab")
_zw = [1.0 / (k**0.85) for k in range(1, len(VOCAB) + 1)]
VOCAB_CW = list(itertools.accumulate(_zw))
del _zw

DAY0 = 18628  # 2021-01-01 as days since epoch
_DATES: list[str] = []
_NGINX_DATES: list[str] = []
_MON = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _build_dates() -> None:
    import datetime

    d0 = datetime.date(2021, 1, 1)
    for i in range(2200):
        d = d0 + datetime.timedelta(days=i)
        _DATES.append(d.isoformat())
        _NGINX_DATES.append(f"{d.day:02d}/{_MON[d.month - 1]}/{d.year}")


_build_dates()
TIMES = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]


def ts_sql(t: int) -> str:
    """t: seconds since 2021-01-01."""
    return _DATES[t // 86400] + " " + TIMES[t % 86400]


def zipf_words(r: random.Random, k: int) -> list[str]:
    return r.choices(VOCAB, cum_weights=VOCAB_CW, k=k)


def uuids(r: random.Random, n: int) -> list[str]:
    h = r.randbytes(16 * n).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-a{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def lognormal_sizes(
    r: random.Random, n: int, median: float, mean: float, lo: int, hi: int, total: int | None = None
) -> list[int]:
    """n lognormal sizes with the given median, clipped to [lo, hi].

    With `total`, sigma is fitted (median kept) so that the clipped sizes sum
    to about `total`; otherwise sigma comes from the unclipped mean.
    """
    mu = math.log(median)
    z = [r.gauss(0.0, 1.0) for _ in range(n)]

    def sizes(sigma: float) -> list[float]:
        return [min(hi, max(lo, math.exp(mu + sigma * x))) for x in z]

    sigma = math.sqrt(2.0 * math.log(mean / median))
    if total is not None and n:
        a, b = 0.0, 4.0
        for _ in range(50):
            sigma = (a + b) / 2
            if sum(sizes(sigma)) < total:
                a = sigma
            else:
                b = sigma
    out = [int(s) for s in sizes(sigma)]
    if total is not None and n >= 100:
        # nudge to the exact total without touching the median much
        diff = total - sum(out)
        step = 1 if diff > 0 else -1
        i = 0
        while diff and i < 100 * n:
            k = i % n
            if lo < out[k] + step <= hi:
                out[k] += step
                diff -= step
            i += 1
    return out


# ---------------------------------------------------------------------------
# SQL dump

SQL_HEADER = """--
-- PostgreSQL database dump
--

-- Dumped from database version 15.5 (Debian 15.5-1.pgdg120+1)
-- Dumped by pg_dump version 15.5 (Debian 15.5-1.pgdg120+1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: users; Type: TABLE; Schema: public; Owner: app
--

CREATE TABLE public.users (
    id bigint NOT NULL,
    uuid uuid NOT NULL,
    email character varying(255) NOT NULL,
    username character varying(64) NOT NULL,
    full_name text,
    country character(2),
    created_at timestamp with time zone NOT NULL,
    last_login_at timestamp with time zone,
    is_active boolean DEFAULT true NOT NULL,
    bio text,
    settings jsonb
);

ALTER TABLE public.users OWNER TO app;

--
-- Name: orders; Type: TABLE; Schema: public; Owner: app
--

CREATE TABLE public.orders (
    id bigint NOT NULL,
    user_id bigint NOT NULL,
    uuid uuid NOT NULL,
    status character varying(32) NOT NULL,
    total_cents bigint NOT NULL,
    currency character(3) NOT NULL,
    items jsonb NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    note text
);

ALTER TABLE public.orders OWNER TO app;

--
-- Name: events; Type: TABLE; Schema: public; Owner: app
--

CREATE TABLE public.events (
    id bigint NOT NULL,
    user_id bigint,
    session_id uuid NOT NULL,
    event_type character varying(64) NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    ip inet,
    user_agent text,
    payload jsonb,
    message text
);

ALTER TABLE public.events OWNER TO app;

"""

COPY_HEADERS = {
    "users": "COPY public.users (id, uuid, email, username, full_name, country, created_at, last_login_at, is_active, bio, settings) FROM stdin;\n",
    "orders": "COPY public.orders (id, user_id, uuid, status, total_cents, currency, items, created_at, updated_at, note) FROM stdin;\n",
    "events": "COPY public.events (id, user_id, session_id, event_type, occurred_at, ip, user_agent, payload, message) FROM stdin;\n",
}

SQL_FOOTER = """

--
-- Name: users users_pkey; Type: CONSTRAINT; Schema: public; Owner: app
--

ALTER TABLE ONLY public.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.orders
    ADD CONSTRAINT orders_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);

CREATE INDEX events_user_id_idx ON public.events USING btree (user_id);

CREATE INDEX orders_user_id_idx ON public.orders USING btree (user_id);

--
-- PostgreSQL database dump complete
--

"""


class SqlRows:
    """Block generators for the three tables.  State (next id, clock) lives here."""

    def __init__(self, r: random.Random, n_users: int = 400_000):
        self.r = r
        self.n_users = n_users
        self.next_id = {"users": 1, "orders": 1, "events": 1}
        self.clock = {"users": 0, "orders": 3_000_000, "events": 6_000_000}

    def _clock(self, table: str, n: int, step: int) -> list[int]:
        r = self.r
        ts = list(itertools.accumulate(r.choices(range(step), k=n), initial=self.clock[table]))
        self.clock[table] = ts[-1]
        return ts[1:]

    def _ids(self, table: str, n: int) -> range:
        a = self.next_id[table]
        self.next_id[table] = a + n
        return range(a, a + n)

    def users(self, n: int) -> list[str]:
        r = self.r
        ids = self._ids("users", n)
        uu = uuids(r, n)
        fi = r.choices(FIRST, k=n)
        la = r.choices(LAST, k=n)
        num = r.choices(range(1, 10000), k=n)
        dom = r.choices(DOMAINS, cum_weights=list(itertools.accumulate(1 / (k + 1) for k in range(len(DOMAINS)))), k=n)
        cc = r.choices(COUNTRIES, k=n)
        ts = self._clock("users", n, 400)
        ll = r.choices(range(0, 40_000_000), k=n)
        act = r.choices(("t", "t", "t", "f"), k=n)
        nb = r.choices((0, 0, 4, 8, 12, 20), k=n)
        words = zipf_words(r, sum(nb))
        theme = r.choices(("dark", "light", "system"), k=n)
        lang = r.choices(("en", "de", "fr", "es", "it", "pt", "ja"), k=n)
        notif = r.choices(("true", "false"), k=n)
        out = []
        wi = 0
        for i in range(n):
            k = nb[i]
            bio = " ".join(words[wi : wi + k]) if k else "\\N"
            wi += k
            first, last = fi[i], la[i]
            out.append(
                f"{ids[i]}\t{uu[i]}\t{first}.{last}{num[i]}@{dom[i]}\t{first[0]}{last}{num[i]}\t{first.title()} {last.title()}\t{cc[i]}\t"
                f"{ts_sql(ts[i])}+00\t{ts_sql(ts[i] + ll[i])}+00\t{act[i]}\t{bio}\t"
                f'{{"lang": "{lang[i]}", "theme": "{theme[i]}", "newsletter": {notif[i]}, "notifications": {{"email": true, "push": {notif[i]}}}}}\n'
            )
        return out

    def orders(self, n: int) -> list[str]:
        r = self.r
        ids = self._ids("orders", n)
        uid = r.choices(range(1, self.n_users), k=n)
        uu = uuids(r, n)
        st = r.choices(ORDER_STATUS, cum_weights=(10, 40, 60, 90, 94, 96, 99, 100), k=n)
        cur = r.choices(CURRENCIES, cum_weights=(50, 75, 83, 86, 90, 93, 95, 97, 99, 100), k=n)
        ts = self._clock("orders", n, 120)
        upd = r.choices(range(0, 900_000), k=n)
        ni = r.choices((1, 1, 1, 2, 2, 3, 4), k=n)
        tot = sum(ni)
        sku = r.choices(range(1000, 60000), k=tot)
        qty = r.choices((1, 1, 1, 1, 2, 2, 3, 5), k=tot)
        price = r.choices(range(199, 29999, 100), k=tot)
        nn = r.choices((0, 0, 0, 0, 0, 3, 6, 10), k=n)
        words = zipf_words(r, sum(nn))
        out = []
        ii = wi = 0
        for i in range(n):
            items = []
            total = 0
            for j in range(ii, ii + ni[i]):
                total += qty[j] * price[j]
                items.append(f'{{"sku": "SKU-{sku[j]}", "qty": {qty[j]}, "price_cents": {price[j]}}}')
            ii += ni[i]
            k = nn[i]
            note = " ".join(words[wi : wi + k]) if k else "\\N"
            wi += k
            out.append(
                f"{ids[i]}\t{uid[i]}\t{uu[i]}\t{st[i]}\t{total}\t{cur[i]}\t[{', '.join(items)}]\t"
                f"{ts_sql(ts[i])}+00\t{ts_sql(ts[i] + upd[i])}+00\t{note}\n"
            )
        return out

    def events(self, n: int) -> list[str]:
        r = self.r
        ids = self._ids("events", n)
        # sessions: runs of consecutive events share user, session id, ip and agent
        out = []
        ts = self._clock("events", n, 6)
        et = r.choices(
            EVENT_TYPES,
            cum_weights=list(itertools.accumulate(1 / (k + 1) ** 0.8 for k in range(len(EVENT_TYPES)))),
            k=n,
        )
        ms = r.choices(range(1, 5000), k=n)
        frac = r.choices(range(1000), k=n)
        nw = r.choices((0, 10, 18, 26, 38, 52), k=n)
        words = zipf_words(r, sum(nw))
        prod = r.choices(range(1000, 60000), k=n)
        rid = r.randbytes(8 * n).hex()
        trace = r.randbytes(16 * n).hex()
        cts = r.choices(range(1_600_000_000_000, 1_700_000_000_000), k=n)
        path = r.choices(API_PATHS, k=n)
        plat = r.choices(PLATFORMS, cum_weights=(50, 70, 90, 97, 100), k=n)
        wi = 0
        i = 0
        while i < n:
            run = min(n - i, r.choice((1, 1, 2, 3, 4, 6, 8)))
            uid = str(r.randrange(1, self.n_users)) if r.random() < 0.85 else "\\N"
            sess = uuids(r, 1)[0]
            ip = f"{r.choice((10, 172, 192, 81, 93, 185, 203))}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
            if r.random() < 0.5:
                ua = r.choice(BROWSERS)
            else:
                ua = (
                    f"ShopApp/{r.randrange(1, 6)}.{r.randrange(30)}.{r.randrange(10)} "
                    f"({r.choice(('iPhone', 'iPad', 'Pixel 8', 'SM-S918B', 'Mi 11'))}; "
                    f"{r.choice(('iOS', 'Android'))} {r.randrange(10, 18)}.{r.randrange(8)}) build/{r.randrange(10000, 99999)}"
                )
            for j in range(i, i + run):
                k = nw[j]
                msg = " ".join(words[wi : wi + k]) if k else "\\N"
                wi += k
                out.append(
                    f"{ids[j]}\t{uid}\t{sess}\t{et[j]}\t{ts_sql(ts[j])}.{frac[j]:03d}+00\t{ip}\t{ua}\t"
                    f'{{"path": "{path[j]}", "product_id": {prod[j]}, "platform": "{plat[j]}", "duration_ms": {ms[j]}, '
                    f'"request_id": "{rid[16 * j : 16 * j + 16]}", "trace_id": "{trace[32 * j : 32 * j + 32]}", "client_ts": {cts[j]}}}\t{msg}\n'
                )
            i += run
        return out


def gen_sql(path: str, total: int, seed: int, part: int = 0) -> int:
    """One dump file of `total` bytes; part k > 0 (of a dump split with --dump-parts) draws
    its own rows (seed string "SEED:sql:k"), so no two parts share content."""
    r = random.Random(f"{seed}:sql" if part == 0 else f"{seed}:sql:{part}")
    g = SqlRows(r)
    written = 0
    with open(path, "wb", buffering=0) as f:

        def put(s: str) -> None:
            nonlocal written
            b = s.encode("ascii")
            f.write(b)
            written += len(b)

        put(SQL_HEADER)
        budget = total - len(SQL_HEADER) - len(SQL_FOOTER)
        for table, share in SQL_SHARES:
            target = written + int(budget * share)
            put(COPY_HEADERS[table])
            fn = getattr(g, table)
            while written < target:
                rows = fn(4000)
                # cut the last block at the target (whole rows)
                block = "".join(rows)
                if written + len(block) > target:
                    acc = 0
                    need = target - written
                    for k, row in enumerate(rows):
                        acc += len(row)
                        if acc >= need:
                            block = "".join(rows[: k + 1])
                            break
                put(block)
            put("\\.\n\n\n")
        put(SQL_FOOTER)
    return written


# ---------------------------------------------------------------------------
# Logs


def log_lines(r: random.Random, kind: str, svc: str, t: int, n: int) -> tuple[list[str], int]:
    """n log lines starting at time t (seconds since 2021-01-01); returns (lines, new t)."""
    ts = list(itertools.accumulate(r.choices((0, 0, 0, 1, 1, 2, 3, 5), k=n), initial=t))
    ms = r.choices(range(1000), k=n)
    meth = r.choices(HTTP_METHODS, k=n)
    path = r.choices(API_PATHS, k=n)
    pid = r.choices(range(1, 99999), k=n)
    stat = r.choices(HTTP_STATUS, k=n)
    dur = r.choices(range(1, 3000), k=n)
    out = []
    if kind == "nginx":
        size = r.choices(range(0, 60000), k=n)
        ua = r.choices(BROWSERS, k=n)
        ipa = r.choices((10, 66, 81, 93, 172, 185, 192, 203), k=n)
        ipb = r.choices(range(256), k=n)
        ipc = r.choices(range(256), k=n)
        ipd = r.choices(range(1, 255), k=n)
        reqid = r.randbytes(16 * n).hex()
        ut = r.choices(range(1, 2000), k=n)
        ref = r.choices(
            (
                "-",
                "-",
                "-",
                "https://shop.example.com/",
                "https://www.google.com/",
                "https://shop.example.com/cart",
                "https://shop.example.com/p/",
            ),
            k=n,
        )
        for i in range(n):
            tt = ts[i + 1]
            q = f"/{pid[i]}" if path[i].startswith("/api") else ""
            out.append(
                f"{ipa[i]}.{ipb[i]}.{ipc[i]}.{ipd[i]} - - [{_NGINX_DATES[tt // 86400]}:{TIMES[tt % 86400]} +0000] "
                f'"{meth[i]} {path[i]}{q} HTTP/1.1" {stat[i]} {size[i]} "{ref[i]}" "{ua[i]}" {dur[i] / 1000:.3f} '
                f"{reqid[32 * i : 32 * i + 32]} upstream=10.0.{ipc[i]}.{ipb[i]}:8080 ut={ut[i] / 1000:.3f}\n"
            )
    else:
        lvl = r.choices(LOG_LEVELS, k=n)
        msg = r.choices(
            LOG_MESSAGES, cum_weights=list(itertools.accumulate(1 / (k + 1) for k in range(len(LOG_MESSAGES)))), k=n
        )
        wrk = r.choices(range(1, 9), k=n)
        rid = r.randbytes(8 * n).hex()
        uid = r.choices(range(1, 400000), k=n)
        nw = r.choices((0, 3, 6, 10, 14, 20), k=n)
        words = zipf_words(r, sum(nw))
        wi = 0
        for i in range(n):
            tt = ts[i + 1]
            k = nw[i]
            extra = (' detail="' + " ".join(words[wi : wi + k]) + '"') if k else ""
            wi += k
            out.append(
                f"{_DATES[tt // 86400]}T{TIMES[tt % 86400]}.{ms[i]:03d}Z {lvl[i]:<5} [worker-{wrk[i]}] {svc}: {msg[i]} "
                f"method={meth[i]} path={path[i]} status={stat[i]} duration_ms={dur[i] / 10:.1f} "
                f"request_id={rid[16 * i : 16 * i + 16]} user_id={uid[i]}{extra}\n"
            )
    return out, ts[-1]


def log_kind(path: str) -> str:
    return "nginx" if "nginx" in path else "app"


def log_text(r: random.Random, path: str, t: int, nbytes: int) -> tuple[bytes, int]:
    """About nbytes (whole lines, >= nbytes) of log text for the log at path."""
    kind = log_kind(path)
    svc = os.path.basename(os.path.dirname(path)) or "app"
    parts = []
    size = 0
    while size < nbytes:
        lines, t = log_lines(r, kind, svc, t, max(16, min(6000, (nbytes - size) // 150 + 8)))
        for ln in lines:
            parts.append(ln)
            size += len(ln)
            if size >= nbytes:
                break
    return "".join(parts).encode("ascii"), t


def log_plan(scale: float, seed: int) -> list[tuple[str, int]]:
    """[(relative path, size)] of all logs."""
    n = max(1, round(LOG_COUNT * scale))
    r = random.Random(f"{seed}:logplan")
    mean = LOG_BYTES / LOG_COUNT
    sizes = lognormal_sizes(r, n, LOG_MEDIAN, mean, LOG_MIN, LOG_MAX, total=int(LOG_BYTES * scale))
    plan = []
    for i, sz in enumerate(sizes):
        svc = LOG_SERVICES[r.randrange(len(LOG_SERVICES))]
        day = r.randrange(1000)
        stem = "access" if "nginx" in svc else svc
        plan.append((f"logs/{svc}/{stem}-{_DATES[day]}-{i:04d}.log", sz))
    return plan


def gen_logs(out: str, plan: list[tuple[str, int]], idx: list[int], seed: int) -> int:
    total = 0
    for i in idx:
        rel, size = plan[i]
        r = random.Random(f"{seed}:log:{i}")
        p = os.path.join(out, rel)
        t = _DATES.index(rel[-19:-9]) * 86400 + r.randrange(3600)  # the date in the name
        with open(p, "wb", buffering=0) as f:
            written = 0
            while written < size:
                chunk, t = log_text(r, rel, t, min(BLOCK, size - written))
                if written + len(chunk) > size:  # cut at the line after the target
                    cut = chunk.find(b"\n", size - written - 1)
                    chunk = chunk[: cut + 1] if cut >= 0 else chunk
                f.write(chunk)
                written += len(chunk)
        total += written
    return total


# ---------------------------------------------------------------------------
# Binaries


def bin_plan(scale: float) -> list[tuple[str, int]]:
    n = max(1, round(BIN_COUNT * scale))
    total = int(BIN_BYTES * scale)
    base = total // n
    return [(f"bin/blob-{i:03d}.bin", base + (1 if i < total - base * n else 0)) for i in range(n)]


def gen_bins(out: str, plan: list[tuple[str, int]], idx: list[int], seed: int) -> int:
    total = 0
    for i in idx:
        rel, size = plan[i]
        r = random.Random(f"{seed}:bin:{i}")
        with open(os.path.join(out, rel), "wb", buffering=0) as f:
            left = size
            while left:
                k = min(left, 4 << 20)
                f.write(r.randbytes(k))
                left -= k
        total += size
    return total


# ---------------------------------------------------------------------------
# Config files

CONF_SECTIONS = (
    "server",
    "database",
    "cache",
    "logging",
    "auth",
    "metrics",
    "queue",
    "storage",
    "mail",
    "features",
    "limits",
    "tracing",
    "payments",
    "search",
    "cors",
    "tls",
)
CONF_KEYS = (
    "host",
    "port",
    "enabled",
    "timeout_ms",
    "max_connections",
    "pool_size",
    "level",
    "format",
    "path",
    "url",
    "user",
    "region",
    "bucket",
    "retries",
    "backoff_ms",
    "ttl_seconds",
    "endpoint",
    "api_key",
    "secret",
    "name",
    "replicas",
    "workers",
    "buffer_size",
    "interval",
    "threshold",
    "mode",
    "compression",
    "ca_file",
    "cert_file",
    "key_file",
    "allowed_origins",
    "sample_rate",
    "namespace",
    "topic",
    "group_id",
    "driver",
    "dsn",
    "token",
    "ca_bundle",
    "signing_key",
    "id",
    "instance_id",
    "password",
    "webhook_secret",
)
CONF_STEMS = (
    "app",
    "service",
    "settings",
    "values",
    "deployment",
    "config",
    "override",
    "defaults",
    "secrets",
    "routing",
    "feature-flags",
    "tenant",
)


CONF_POOL = 200000


def _pooled(r: random.Random, key: str) -> str:
    """64 hex chars, one of CONF_POOL values per key."""
    return hashlib.sha256(f"{key}:{r.randrange(CONF_POOL)}".encode()).hexdigest()


def _conf_value(r: random.Random, key: str, svc: str) -> str:
    if key in ("port",):
        return str(r.choice((80, 443, 5432, 6379, 8080, 8443, 9000, 9090, 9200, 11211, r.randrange(1024, 65535))))
    if key in ("enabled",):
        return r.choice(("true", "false"))
    # secrets and ids come from a shared pool: the same credentials appear in
    # many files (cross-file redundancy, as in real config trees)
    if key in ("api_key", "secret", "password", "webhook_secret"):
        return _pooled(r, key)[: r.choice((32, 48, 64))]
    if key in ("token", "ca_bundle", "signing_key"):
        return base64.b64encode(bytes.fromhex(_pooled(r, key))[: r.randrange(16, 48)]).decode()
    if key in ("id", "instance_id"):
        h = _pooled(r, key)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
    if key in ("host", "endpoint", "url", "dsn"):
        h = f"{svc}-{r.choice(('db', 'cache', 'api', 'queue', 'search'))}-{r.randrange(1000)}.{r.choice(('eu-west-1', 'us-east-1', 'ap-south-1', 'internal'))}.example.net"
        return h if key == "host" else f"https://{h}/{r.choice(('v1', 'v2', 'api', 'ingest'))}"
    if key in ("level",):
        return r.choice(("debug", "info", "warn", "error"))
    if key in ("region",):
        return r.choice(("eu-west-1", "us-east-1", "us-west-2", "ap-south-1", "eu-central-1"))
    if key in ("sample_rate", "threshold"):
        return f"{r.random():.3f}"
    if key in ("name", "namespace", "topic", "group_id", "bucket", "user"):
        return f"{svc}-{r.choice(VOCAB[:2000])}-{r.randrange(100000)}"
    if key in ("path", "ca_file", "cert_file", "key_file"):
        return f"/etc/{svc}/{r.choice(VOCAB[:300])}/{r.choice(('cert.pem', 'key.pem', 'ca.crt', 'data', 'cache'))}"
    if key == "allowed_origins":
        return "https://" + r.choice(DOMAINS)
    if key in ("mode", "format", "compression", "driver"):
        return r.choice(("json", "text", "zstd", "gzip", "lz4", "postgres", "mysql", "strict", "lenient", "auto"))
    if r.random() < 0.5:
        return str(r.randrange(1_000_000))
    return str(r.choice((1, 2, 3, 5, 8, 10, 16, 30, 32, 60, 64, 100, 128, 256, 300, 500, 1000, 3600)))


def _filler(r: random.Random, n: int) -> str:
    """n characters of Zipf words (used to pad files to an exact size)."""
    s = " ".join(zipf_words(r, n // 4 + 4))
    return (s + " " * n)[:n]


def conf_text(r: random.Random, ext: str, svc: str, size: int) -> bytes:
    """A JSON/INI/YAML config file of exactly `size` bytes (>= 64)."""
    parts: list[str] = []
    n = 0
    while n < size:
        sec = r.choice(CONF_SECTIONS)
        keys = r.sample(CONF_KEYS, r.randrange(3, 9))
        if ext == "ini":
            p = f"[{sec}]\n" + "".join(f"{k} = {_conf_value(r, k, svc)}\n" for k in keys) + "\n"
        elif ext == "yaml":
            p = f"{sec}:\n" + "".join(f"  {k}: {_conf_value(r, k, svc)}\n" for k in keys)
        else:
            inner = ",\n".join(f'    "{k}": "{_conf_value(r, k, svc)}"' for k in keys)
            p = f'  "{sec}_{r.randrange(100)}": {{\n{inner}\n  }},\n'
        parts.append(p)
        n += len(p)
    if ext == "json":
        # {\n <members> "_comment": "<pad>"\n}\n
        fixed = len('{\n  "_comment": ""\n}\n')
        while parts and fixed + sum(map(len, parts)) > size:
            parts.pop()
        body = "".join(parts)
        text = "{\n" + body + '  "_comment": "' + _filler(r, size - fixed - len(body)) + '"\n}\n'
    else:
        fixed = len("# \n")
        while parts and fixed + sum(map(len, parts)) > size:
            parts.pop()
        body = "".join(parts)
        text = body + "# " + _filler(r, size - fixed - len(body)) + "\n"
    assert len(text) == size, (len(text), size)
    return text.encode("ascii")


def conf_plan(scale: float, seed: int) -> list[tuple[str, int]]:
    n = max(1, round(CONF_COUNT * scale))
    ndirs = max(1, round(CONF_DIRS * scale))
    r = random.Random(f"{seed}:confplan")
    groups = max(1, round(ndirs / 44))
    leaves = max(1, ndirs - groups)
    gnames = [f"{r.choice(VOCAB[:2000])}-{g:02d}" for g in range(groups)]
    dirs = [f"conf/{gnames[i % groups]}/{r.choice(VOCAB[:5000])}-{i:04d}" for i in range(leaves)]
    # uneven fill: Zipf-ish weights over directories
    cw = list(itertools.accumulate(1 / (k + 1) ** 0.6 for k in range(leaves)))
    sizes = lognormal_sizes(r, n, CONF_MEDIAN, CONF_MEAN, CONF_MIN, CONF_MAX, total=round(CONF_BYTES * n / CONF_COUNT))
    plan = []
    for i in range(n):
        d = r.choices(dirs, cum_weights=cw)[0]
        ext = r.choice(("json", "json", "yaml", "yaml", "ini"))
        plan.append((f"{d}/{r.choice(CONF_STEMS)}-{i:05d}.{ext}", sizes[i]))
    return plan


def gen_conf(out: str, plan: list[tuple[str, int]], idx: list[int], seed: int) -> int:
    total = 0
    made = set()
    for i in idx:
        rel, size = plan[i]
        r = random.Random(f"{seed}:conf:{i}")
        d = os.path.dirname(rel)
        if d not in made:
            os.makedirs(os.path.join(out, d), exist_ok=True)
            made.add(d)
        svc = rel.split("/")[1].split("-")[0]
        data = conf_text(r, rel.rsplit(".", 1)[1], svc, size)
        with open(os.path.join(out, rel), "wb") as f:
            f.write(data)
        total += len(data)
    return total


# ---------------------------------------------------------------------------


def _task(args):
    kind, out, scale, seed, idx = args
    t0 = time.perf_counter()
    if kind == "sql":
        n = sum(gen_sql(os.path.join(out, rel), size, seed, part) for part, (rel, size) in idx)
    elif kind == "logs":
        n = gen_logs(out, log_plan(scale, seed), idx, seed)
    elif kind == "bin":
        n = gen_bins(out, bin_plan(scale), idx, seed)
    else:
        n = gen_conf(out, conf_plan(scale, seed), idx, seed)
    return kind, n, time.perf_counter() - t0


def sql_plan(scale: float, parts: int = 1) -> list[tuple[int, tuple[str, int]]]:
    """[(part, (relative path, size))] of the dump: one file db/pg_dump.sql, or with parts > 1
    that many files db/pg_dump-NN.sql of equal size (the same total)."""
    total = int(SQL_BYTES * scale)
    if parts <= 1:
        return [(0, ("db/pg_dump.sql", total))]
    base = total // parts
    return [(k, (f"db/pg_dump-{k:02d}.sql", base + (1 if k < total - base * parts else 0))) for k in range(parts)]


def marker_path(out: str) -> str:
    return os.path.abspath(out).rstrip("/") + ".gen.json"


def generate(
    out: str, scale: float = 1.0, seed: int = 1, jobs: int = 2, quiet: bool = False, dump_parts: int = 1
) -> dict:
    t0 = time.perf_counter()
    if os.path.exists(marker_path(out)):
        os.unlink(marker_path(out))
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "db"))
    os.makedirs(os.path.join(out, "bin"))
    logs = log_plan(scale, seed)
    for d in sorted({os.path.dirname(p) for p, _ in logs}):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    bins = bin_plan(scale)
    confs = conf_plan(scale, seed)
    sqls = sql_plan(scale, dump_parts)
    tasks = [("sql", out, scale, seed, [p]) for p in sqls]
    # split logs into size-balanced chunks, biggest first
    order = sorted(range(len(logs)), key=lambda i: -logs[i][1])
    nchunks = 6
    chunks = [order[k::nchunks] for k in range(nchunks)]
    tasks += [("logs", out, scale, seed, c) for c in chunks if c]
    tasks.append(("bin", out, scale, seed, list(range(len(bins)))))
    half = len(confs) // 2
    tasks += [
        ("conf", out, scale, seed, list(range(0, half))),
        ("conf", out, scale, seed, list(range(half, len(confs)))),
    ]
    totals: dict[str, int] = {}
    secs: dict[str, float] = {}
    if jobs <= 1:
        results = map(_task, tasks)
    else:
        ex = ProcessPoolExecutor(max_workers=jobs)
        results = ex.map(_task, tasks)
    for kind, n, dt in results:
        totals[kind] = totals.get(kind, 0) + n
        secs[kind] = secs.get(kind, 0.0) + dt
    if jobs > 1:
        ex.shutdown()
    info = {
        "out": os.path.abspath(out),
        "scale": scale,
        "seed": seed,
        **({"dump_parts": dump_parts} if dump_parts > 1 else {}),
        "bytes": totals,
        "total_bytes": sum(totals.values()),
        "files": {"sql": len(sqls), "logs": len(logs), "bin": len(bins), "conf": len(confs)},
        "task_seconds": {k: round(v, 2) for k, v in secs.items()},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    # marker next to (not inside) the data set: run.py checks scale/seed with it
    with open(marker_path(out), "w") as f:
        json.dump(info, f, indent=1)
    if not quiet:
        print(
            f"generated {info['total_bytes']:,} bytes in {sum(info['files'].values()):,} files "
            f"under {out} in {info['seconds']:.1f} s",
            file=sys.stderr,
        )
        for k in ("sql", "logs", "bin", "conf"):
            print(
                f"  {k:5} {info['files'][k]:>6,} files {totals.get(k, 0):>14,} B ({secs.get(k, 0):.1f} s in workers)",
                file=sys.stderr,
            )
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output directory (replaced if it exists)")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--dump-parts",
        type=int,
        default=1,
        help="write the SQL dump as this many equal files db/pg_dump-NN.sql, each its own rows "
        "(default 1: db/pg_dump.sql); bench/growth.py keeps the file sizes of a bigger set with it",
    )
    ap.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (does not change the output)"
    )
    a = ap.parse_args(argv)
    if a.scale <= 0:
        ap.error("--scale must be > 0")
    if a.dump_parts < 1:
        ap.error("--dump-parts must be >= 1")
    generate(a.out, a.scale, a.seed, a.jobs, dump_parts=a.dump_parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
