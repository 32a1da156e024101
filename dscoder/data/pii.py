"""Personal data out of the corpus: emails, IP addresses and secrets become placeholders.

DeepSeek-Coder does not publish its PII step; we follow BigCode's StarCoder pipeline (regexes
for emails and IPs, `detect-secrets` for keys) and its placeholders `<EMAIL>`, `<IP_ADDRESS>`,
`<KEY>`. A placeholder, not a random look-alike: the model should learn that an address goes
here, never one particular fake address.

Code is full of strings that look like PII and are not, so each detector errs on the side of
keeping text. What is deliberately *kept* (byte-identical):

- emails: addresses at the reserved example domains (example.com/.net/.org, *.example, *.test,
  *.invalid, *.localhost; RFC 2606/6761: nobody's mailbox) and at *.local (mDNS), `git@host`
  (an SSH remote's fixed user, e.g. `git@github.com:org/repo`), decorators (`@property`:
  nothing before the `@`), `python@2.7` / `pkg@1.2.3` (no alphabetic TLD), and matrix
  products such as `x@self.weight` (the TLD must be a two-letter country code or a common
  generic TLD, minus file extensions like `.py`/`.sh` that happen to be country codes).
- IPv4: every address that is not globally routable (private, loopback, link-local,
  unspecified, CGNAT, the TEST-NET documentation ranges, multicast, reserved, broadcast and
  netmasks like 255.255.255.0), the well-known public DNS resolvers (8.8.8.8, 1.1.1.1, ...;
  BigCode's list: services, not people), dotted quads inside longer dotted runs
  (`1.2.3.4.5`, OIDs, `1.0.0.127.in-addr.arpa`) or glued to words (`v1.2.3.4`), CIDR networks
  (`52.94.0.0/16`: a range, not a host), quads with "version"/"release" before them on the
  line, and quads whose first three parts are single digits (`1.2.3.4`, `7.1.4.34`, "section
  8.2.4.44"), which in code are almost always versions, unless the line talks about an
  ip/host/server/dns/address/proxy/gateway (BigCode's rule, widened from x.x.x.x).
- IPv6: candidates must parse with `ipaddress`, contain a digit, have at least three groups
  and be global unicast, which keeps `std::`, `Foo::bar`, `a[1::2]`, `::1`, fe80::, 2001:db8::
  (documentation), clock times (`12:30:45`) and MAC addresses (six groups: not IPv6; MACs
  identify hardware, not a person, and are left alone).
- secrets: hex digests of a digest's length with a hash word (sha/md5/hash/digest/checksum/
  commit/rev/integrity/...) on their line or just before it (lock files, pinned downloads,
  doctest output) and `sha256:`/`sha512-` prefixed digests; UUIDs, `*_id = "..."` identifiers,
  sequential and templated strings (detect-secrets' own heuristics); alphabets
  ('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'); high-entropy strings that are mostly words (long
  CamelCase identifiers, `org/Model-Name-32B`: BigCode ran a gibberish detector for this);
  quoted strings under 20 characters; low-entropy hits of the pattern detectors (the
  `AKIAAQAAAAAABAAHAM0A` random base64 data holds by chance), and lines of bare base64 data.
  A git SHA in a comment is unquoted, so the entropy detectors never see it. detect-secrets'
  KeywordDetector (`password = "..."`, any value) and BasicAuthDetector are not used, as in
  BigCode: in code they mostly fire on test fixtures and placeholders. Values shaped like keys
  in tests and docs (`secrets.token_hex()` output in a docstring) *are* replaced: a
  placeholder costs nothing, a leaked key does.

Only the secret value is replaced, not its line; for a PEM private key the BEGIN/END lines stay
and the body between them becomes one `<KEY>`.

Speed: redaction runs over whole corpora, so the costly work is gated. `@` and `::` are
found by `str` search, IPv4 by one cheap regex, and detect-secrets' 23 detectors only look at a
few hundred characters around a long base64/hex-like run or a known key prefix. Text with no
PII comes back as the same object. About 11-16 MB/s on one core over CPython's standard
library, 14 MB/s over site-packages; files that are tables of quoted random strings are the
slow case (~1-2 MB/s), since every row is a candidate.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from functools import lru_cache

PLACEHOLDERS = {"email": "<EMAIL>", "ip_address": "<IP_ADDRESS>", "secret": "<KEY>"}
KINDS = tuple(PLACEHOLDERS)

# ---------------------------------------------------------------- emails
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_%+-.")
_EMAIL = re.compile(
    r"(?<![\w.%+\-])([\w%+\-]+(?:\.[\w%+\-]+)*)"  # local part, starting where a run of its chars starts
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))"  # labels. TLD
    r"(?![\w\-]|\.[A-Za-z0-9])", re.ASCII)
# Generic TLDs an address in source code realistically has; two-letter ones are country codes.
_GENERIC_TLDS = frozenset("""com net org edu gov mil int info biz name pro mobi aero coop museum
    io ai app dev co me tv cc xyz tech online site email mail cloud systems software digital network
    solutions company services agency group studio design media space world life live blog page
    codes engineering consulting science center global tools zone""".split())
_NOT_TLDS = frozenset({"py", "sh", "md", "rb", "cs", "js", "ts", "pl", "so", "pm", "hs", "ml", "rs", "mk"})
_RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
_RESERVED_SUFFIXES = (".example", ".test", ".invalid", ".localhost", ".local")


def _is_email(local: str, domain: str, tld: str) -> bool:
    tld = tld.lower()
    if tld in _NOT_TLDS or (len(tld) != 2 and tld not in _GENERIC_TLDS):
        return False
    domain = domain.lower()
    if domain in _RESERVED_DOMAINS or domain.endswith(tuple("." + d for d in _RESERVED_DOMAINS)):
        return False
    if ("." + domain).endswith(_RESERVED_SUFFIXES):
        return False
    return local.lower() != "git"


def _emails(text: str) -> list[tuple[int, int, str]]:
    """Email spans. The regex is only tried at the `@`s, which `str.find` locates far faster
    than a regex scan of the whole text."""
    spans = []
    at = text.find("@")
    while at != -1:
        start = at  # back to where the run of local-part characters starts: the only place
        while start > 0 and at - start < 128 and text[start - 1] in _LOCAL_CHARS:  # the regex
            start -= 1  # can start (its lookbehind), so one anchored match decides
        m = _EMAIL.match(text, start, at + 256) if start < at else None
        if m is not None:
            if _is_email(m.group(1), m.group(2), m.group(3)):
                spans.append((m.start(), m.end(), "email"))
            at = text.find("@", m.end())
        else:
            at = text.find("@", at + 1)
    return spans


# ---------------------------------------------------------------- IP addresses
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", re.ASCII)
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}|(?=:))(?::[0-9A-Fa-f]{0,4}){2,7}+(?![\w:]|\.\d)", re.ASCII)
_IPV6_HINT = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:", re.ASCII)
_VERSIONISH = re.compile(r"version|\bver\b|\brelease", re.I)
_IPISH = re.compile(r"\bip|ip_?addr|host|server|\bdns|addr|proxy|gateway|\bping\b|\bconnect|\broute", re.I)
# Public DNS resolvers (Google, Cloudflare, Quad9, OpenDNS, Comodo, AdGuard, Alternate DNS): BigCode's
# list, plus Google's and Cloudflare's IPv6 addresses.
PUBLIC_DNS = frozenset({"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "76.76.19.19", "76.223.122.150", "9.9.9.9",
                        "149.112.112.112", "208.67.222.222", "208.67.220.220", "8.26.56.26", "8.20.247.20",
                        "94.140.14.14", "94.140.15.15", "2001:4860:4860::8888", "2001:4860:4860::8844",
                        "2606:4700:4700::1111", "2606:4700:4700::1001"})
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _line_around(text: str, start: int, end: int) -> tuple[str, str]:
    """The text before `start` and after `end` on the same line (at most 80 characters each)."""
    lo = text.rfind("\n", max(0, start - 80), start) + 1 or max(0, start - 80)
    hi = text.find("\n", end, end + 80)
    return text[max(lo, start - 80):start], text[end:hi if hi != -1 else end + 80]


def _personal_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (address.is_global and not address.is_multicast and not address.is_reserved
            and str(address) not in PUBLIC_DNS)


def _ipv4s(text: str) -> list[tuple[int, int, str]]:
    spans = []
    for m in _IPV4.finditer(text):
        start, end = m.span()
        if start and (text[start - 1] in _WORD or text[start - 1] == "."):
            continue  # glued to a word (v1.2.3.4) or inside a longer dotted run
        if end < len(text) and (text[end] in _WORD or (text[end] in "./" and text[end + 1:end + 2] in _WORD)):
            continue  # 1.2.3.4.5, 1.0.0.127.in-addr.arpa, and 52.94.0.0/16: a network, not a host
        value = m.group()
        try:
            address = ipaddress.IPv4Address(value)  # rejects octets > 255 and leading zeros
        except ValueError:
            continue
        if not _personal_ip(address):
            continue
        before, after = _line_around(text, start, end)
        if _VERSIONISH.search(before):
            continue
        if value[1] == value[3] == value[5] == "." and not _IPISH.search(before + " " + after):
            continue  # 1.2.3.4, 7.1.4.34: a version (or section) number unless the line is about hosts
        spans.append((start, end, "ip_address"))
    return spans


def _ipv6s(text: str) -> list[tuple[int, int, str]]:
    if "::" not in text and _IPV6_HINT.search(text) is None:
        return []
    spans = []
    for m in _IPV6.finditer(text):
        value = m.group()
        if sum(1 for g in value.split(":") if g) < 3 or not any(c.isdigit() for c in value):
            continue
        try:
            address = ipaddress.IPv6Address(value)
        except ValueError:
            continue
        if _personal_ip(address):
            spans.append((m.start(), m.end(), "ip_address"))
    return spans


# ---------------------------------------------------------------- secrets
# detect-secrets only sees text around a run of 20+ key characters that has a digit or is a
# whole quoted string (what the entropy plugins look at), or around a prefix whose token can
# be short (Slack) or split (webhook URLs, PuTTY keys); PEM blocks are found by their armour.
_RUN = re.compile(r"[A-Za-z0-9+/_\-]{20,}+", re.ASCII)
_PREFIXES = ("xox", "hooks.slack.com", "PuTTY-User-Key")
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----(.*?)(?:-----END \1-----|\Z)", re.S)
_PEM_HEAD = re.compile(r"""(?:\s|\\[nr]|["'+,])*""")  # line breaks, literal \n, string joins
_PEM_TAIL = re.compile(r"""(?:\s|[nr]\\|["'+,])*""")  # the same, read backwards
_HASH_WORDS = re.compile(r"sha|md5|hash|digest|checksum|\bsum\b|commit|rev|integrity|etag|fingerprint|blake",
                         re.I)
_WORDISH = re.compile(r"[A-Z]?[a-z]{3,}", re.ASCII)
_DIGEST_PREFIX = re.compile(r"^(?:sha\d*|md5|blake2[bs]?)[-:]", re.I)
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_DIGEST_LENGTHS = {32, 40, 56, 64, 96, 128}


@lru_cache(maxsize=1)
def _plugins() -> tuple[list, list]:
    """detect-secrets' detectors: (regex-based, entropy-based). Built once per process."""
    from detect_secrets.plugins import (artifactory, aws, azure_storage_key, cloudant, discord, github_token,
                                        gitlab_token, high_entropy_strings, ibm_cloud_iam, ibm_cos_hmac, jwt,
                                        mailchimp, npm, openai, pypi_token, sendgrid, slack, softlayer,
                                        square_oauth, stripe, telegram_token, twilio)
    regex_based = [artifactory.ArtifactoryDetector(), aws.AWSKeyDetector(),
                   azure_storage_key.AzureStorageKeyDetector(), cloudant.CloudantDetector(),
                   discord.DiscordBotTokenDetector(), github_token.GitHubTokenDetector(),
                   gitlab_token.GitLabTokenDetector(), ibm_cloud_iam.IbmCloudIamDetector(),
                   ibm_cos_hmac.IbmCosHmacDetector(), jwt.JwtTokenDetector(), mailchimp.MailchimpDetector(),
                   npm.NpmDetector(), openai.OpenAIDetector(), pypi_token.PypiTokenDetector(),
                   sendgrid.SendGridDetector(), slack.SlackDetector(), softlayer.SoftlayerDetector(),
                   square_oauth.SquareOAuthDetector(), stripe.StripeDetector(),
                   telegram_token.TelegramBotTokenDetector(), twilio.TwilioKeyDetector()]
    entropy_based = [high_entropy_strings.Base64HighEntropyString(limit=4.5),
                     high_entropy_strings.HexHighEntropyString(limit=3.0)]
    return regex_based, entropy_based


def _is_hash(value: str, context: str) -> bool:
    """A digest, not a credential: lock files, pinned downloads, test vectors. `context` is the
    value's line and the few hundred characters before it (a doctest's expected output, the
    rows of a table of digests, follow the line that names them)."""
    if _DIGEST_PREFIX.match(value):
        return True
    return (len(value) in _DIGEST_LENGTHS and all(c in _HEX_DIGITS for c in value)
            and _HASH_WORDS.search(context) is not None)


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character, over the value's own characters."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


def _entropy_as(plugin, value: str) -> float:
    """detect-secrets' entropy for its plugin (digit-only strings count less for hex), computed
    over the value's characters rather than by a pass per charset character."""
    entropy = _entropy(value)
    if plugin.secret_type == "Hex High Entropy String" and value.isdigit() and len(value) > 1:
        entropy -= 1.2 / math.log2(len(value))
    return entropy


def _is_wordlike(value: str) -> bool:
    """Mostly words: `AmazonRedshiftQueryEditorV2Permissions`, `org/Model-Name-32B`. Long
    identifiers clear the base64 entropy bar but are no secret; in random base64 few
    characters fall in runs of three or more lowercase letters. (BigCode used a gibberish
    detector for the same purpose.)"""
    return sum(len(w) for w in _WORDISH.findall(value)) >= len(value) / 2


def _is_alphabet(value: str) -> bool:
    """Mostly runs of consecutive characters: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567' (base32's
    alphabet) and the like, which detect-secrets' sequence check only catches in its own orders."""
    steps = sum(1 for a, b in zip(value, value[1:]) if ord(b) - ord(a) == 1)
    return steps >= (len(value) - 1) / 2


def _secret_values(line: str, before: str = "") -> set[str]:
    """Secret values in `line` (a window of one line); `before` is the text ahead of it."""
    from detect_secrets.filters import heuristic

    regex_based, entropy_based = _plugins()
    values = set()
    for plugin in regex_based:
        for regex in plugin.denylist:  # not analyze_string: it yields ("ghp",) for a GitHub token
            for m in regex.finditer(line):
                value = max(filter(None, m.groups()), key=len, default="")  # the secret within a
                if len(value) < 8:  # keyword pattern; a group shorter than that is a prefix
                    value = m.group()
                value = value.strip(" \t\"'=:")  # some patterns include their delimiters
                if _entropy(value) > 2.5:  # not AKIAAQAAAAAABAAHAM0A inside a base64 blob
                    values.add(value)
    for plugin in entropy_based:
        for value in plugin.analyze_string(line):
            if (20 <= len(value) and _entropy_as(plugin, value) > plugin.entropy_limit
                    and not _is_wordlike(value) and not heuristic.is_likely_id_string(value, line, plugin)):
                values.add(value)
    return {v for v in values
            if len(v) >= 8 and not heuristic.is_sequential_string(v) and not heuristic.is_potential_uuid(v)
            and not heuristic.is_templated_secret(v) and not heuristic.is_not_alphanumeric_string(v)
            and not _is_alphabet(v) and not _is_hash(v, before + line)}


def _pem_bodies(text: str) -> list[tuple[int, int, str]]:
    spans = []
    for m in _PEM.finditer(text):
        start, end = m.span(2)
        start += len(_PEM_HEAD.match(text, start, end).group())
        end -= len(_PEM_TAIL.match(text[start:end][::-1]).group())
        if end > start:
            spans.append((start, end, "secret"))
    return spans


def _windows(text: str) -> list[tuple[int, int]]:
    """The stretches of text detect-secrets looks at: around each candidate run, 200 characters
    either side within its line (room for `aws_secret_access_key = "...` before a value), merged.
    Runs longer than 1024 characters are data (an embedded image, a wheel), and a line that is
    one bare run of 60+ is a row of a data block (PEM bodies are handled apart): the AKIA...
    that random base64 holds by chance is not a key."""
    windows = []

    def around(start: int, end: int) -> None:
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line_end = len(text) if line_end == -1 else line_end
        windows.append((max(line_start, start - 200), min(line_end, end + 200)))

    for m in _RUN.finditer(text):
        start, end = m.span()
        if end - start > 1024:
            continue
        quoted = start and text[start - 1] in "'\"" and text[end:end + 1] in ("'", '"', "=")
        if not quoted and not any(c.isdigit() for c in m.group()):
            continue
        if end - start >= 60 and text[start - 1:start] in ("", "\n") and text[end:end + 1] in ("", "\n", "\r"):
            continue
        around(start, end)
    for prefix in _PREFIXES:
        at = text.find(prefix)
        while at != -1:
            around(at, at + len(prefix))
            at = text.find(prefix, at + 1)
    windows.sort()
    merged: list[tuple[int, int]] = []
    for start, end in windows:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _secrets(text: str) -> list[tuple[int, int, str]]:
    spans = _pem_bodies(text) if "-----BEGIN" in text else []
    for start, end in _windows(text):
        window = text[start:end]
        for value in _secret_values(window, text[max(0, start - 300):start]):
            at = window.find(value)
            while at != -1:
                spans.append((start + at, start + at + len(value), "secret"))
                at = window.find(value, at + len(value))
    return spans


# ---------------------------------------------------------------- redaction
def find(text: str) -> list[tuple[int, int, str]]:
    """Non-overlapping PII spans `(start, end, kind)` in text order; where two overlap, the one
    starting first (then the longer) wins."""
    spans = _secrets(text)
    if "@" in text:
        spans += _emails(text)
    spans += _ipv4s(text)
    spans += _ipv6s(text)
    spans.sort(key=lambda s: (s[0], -s[1]))
    kept, reach = [], 0
    for span in spans:
        if span[0] >= reach:
            kept.append(span)
            reach = span[1]
    return kept


def redact(text: str) -> tuple[str, dict[str, int]]:
    """The text with every PII span replaced by its kind's placeholder, and how many of each
    kind were replaced. The counts always hold all three kinds (`email`, `ip_address`,
    `secret`), zeros included, so they sum across files without key checks. Text without
    PII is returned as the same object."""
    counts = dict.fromkeys(KINDS, 0)
    spans = find(text)
    if not spans:
        return text, counts
    parts, last = [], 0
    for start, end, kind in spans:
        parts += (text[last:start], PLACEHOLDERS[kind])
        counts[kind] += 1
        last = end
    parts.append(text[last:])
    return "".join(parts), counts
