"""Personal data out of the corpus: emails, IP addresses and secrets become placeholders.

DeepSeek-Coder does not publish its PII step; we follow BigCode's StarCoder pipeline (regexes
for emails and IPs, `detect-secrets` for keys) and its placeholders `<EMAIL>`, `<IP_ADDRESS>`,
`<KEY>`. A placeholder, not a random look-alike: the model should learn that an address goes
here, never one particular fake address. Passwords, which BigCode found with a trained NER
model (StarPII), are found here by detect-secrets' KeywordDetector (`DATABASE_PASSWORD =
"..."`, `password: ...` in YAML, `export API_TOKEN=...`) and BasicAuthDetector
(`postgres://user:<password>@host`), and also become `<KEY>`.

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
  A git SHA in a comment is unquoted, so the entropy detectors never see it. AWS's documented
  example key pair (`AKIAIOSFODNN7EXAMPLE`, `...EXAMPLEKEY`: anything holding EXAMPLE) and
  base64 that decodes to prose with spaces. Values shaped like keys in tests and docs
  (`secrets.token_hex()` output in a docstring) *are* replaced: a placeholder costs nothing,
  a leaked key does.
- keyword assignments: what detect-secrets' KeywordDetector matches (its regexes per file
  type: in code the value must be quoted; in YAML/INI/TOML/properties, and here also shell,
  `.env` and Dockerfiles, it need not be) unless the value is no credential: no literal
  (`password = None`, `= get_password()`, `= os.environ[...]`, `= ""`, `${DB_PASSWORD}`,
  `$VAR`: detect-secrets' indirect-reference, templated and `$` filters), a name or a word
  (letters and `_.-` only, no digit: `"password"`, `"DB_PASSWORD"`, `"X-Api-Key"`,
  `"bearer"`; a one-word password such as `"letmein"` is kept with them), a placeholder
  (`changeme`, `YOUR_API_KEY`, `<your-password>`, `xxx`, `***`, `...`, `foo`, `test`,
  `admin`: a published default opens nothing), prose (a space: prompts, messages), a path
  (`/`, `~/`, `./`), a format (`%s`), an AWS resource name (`arn:`), under 4 characters, or
  held by a variable whose last word names metadata (`PASSWORD_FIELD`, `password_min_length`,
  `private_key_path`, `SECRET_KEY_ENV`, `token_type`, `secretName`). Known misses: annotated
  assignments (`password: str = "..."`) and URLs with no user (`redis://:pw@host`), which
  detect-secrets' regexes do not match.

Only the secret value is replaced, not its line; for a PEM private key the BEGIN/END lines stay
and the body between them becomes one `<KEY>`. A value found once (8 characters or more) is
replaced wherever else it stands in the file as a whole token, as in a test that logs in with
the password assigned above it. Where a secret and an email overlap
(`https://user:<token>@github.com`), the secret wins.

Precision and recall on tests/data/secrets_labelled.jsonl (61 secrets of 20 kinds, 51
look-alikes): `python benchmarks/secrets_eval.py --no-save`.

Speed: redaction runs over whole corpora, so the costly work is gated. `@` and `::` are
found by `str` search, IPv4 by one cheap regex, and detect-secrets' 23 detectors only look at a
few hundred characters around a long base64/hex-like run or a known key prefix. The keyword
regexes only run on the stretch of line around a keyword, found by a search of the lowercased
text for the stems all keywords share (key, pass, pwd, secret, token). Text with no PII comes
back as the same object. About 15 MB/s of CPU time on one core over CPython's standard library
(20 before keyword detection); files that are tables of quoted random strings are the slow
case (~1-2 MB/s), since every row is a candidate.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import ipaddress
import math
import os
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
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-=")
_ASSIGNED = re.compile(r"^[A-Za-z]+=(?=.)")
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


def _is_documented_example(value: str) -> bool:
    """A vendor's published example credential: AWS documents `AKIAIOSFODNN7EXAMPLE` and
    `wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`, and examples and tests across the ecosystem
    copy them. They open no account, and a generated key holds the upper-case word EXAMPLE by
    chance about once in 36^7 (AWS key IDs are upper-case and digits)."""
    return "EXAMPLE" in value


def _is_encoded_prose(value: str) -> bool:
    """Base64 of ordinary text ("SGVsbG8sIHdvcmxk..." in a codec's tests or docs): it clears the
    entropy bar but decodes to words with spaces between them. A credential is random bytes,
    and an encoded `user:password` pair has no space, so it stays a secret."""
    if len(value) % 4 or not value.isascii():
        return False
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return " " in decoded and decoded.isprintable() and _is_wordlike(decoded)


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
                    end = m.end()
                    if m.group().endswith("."):  # the JWT pattern's lazy tail stops before the
                        while end < len(line) and line[end] in _TOKEN_CHARS:  # signature: take
                            end += 1  # the token to its end
                    value = _ASSIGNED.sub("", line[m.start():end])  # `AccountKey=<key>`: the key
                value = value.strip(" \t\"'").lstrip("=:")  # some patterns include their delimiters
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
            and not _is_alphabet(v) and not _is_hash(v, before + line) and not _is_documented_example(v)
            and not _is_encoded_prose(v)}


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


def _secrets(text: str, path: str | None = None) -> list[tuple[int, int, str]]:
    spans = _pem_bodies(text) if "-----BEGIN" in text else []
    found = set()
    for start, end in _windows(text):
        window = text[start:end]
        for value in _secret_values(window, text[max(0, start - 300):start]):
            found.add(value)
            at = window.find(value)
            while at != -1:
                spans.append((start + at, start + at + len(value), "secret"))
                at = window.find(value, at + len(value))
    keyword_spans = _keyword_secrets(text, path)
    if "://" in text:
        keyword_spans += _basic_auth(text)
    spans += keyword_spans
    found.update(text[start:end] for start, end, _ in keyword_spans if end - start >= 8)
    for value in found:  # a secret found once is one everywhere in its file: `assert login(user,
        at = text.find(value)  # "<the password>")` in the test below its assignment
        while at != -1:
            after = at + len(value)
            if not (at and text[at - 1].isalnum()) and not (after < len(text) and text[after].isalnum()):
                spans.append((at, after, "secret"))
            at = text.find(value, after)
    return spans


# ---------------------------------------------------------------- secrets: keyword assignments
# detect-secrets' KeywordDetector finds `password = "..."`, `db_pass: ...`, `secret("...")` with
# one set of regexes per file type (quotes required in code, not in YAML/INI/TOML). Its regexes
# are used as they are, only their keyword alternation widened by the names below, which its
# list lacks and which name credentials in code as surely as `password` does.
_KEYWORDS_ADDED = (
    r"access_?key",  # ACCESS_KEY, aws_access_key (its list has api/auth/service/... _key)
    r"passphrase",
    r"(?:api|auth|access|bearer|refresh|session|bot|oauth|github|gh|gitlab|slack|npm|pypi|hf)_?token",
    r"(?:smtp|mail|mysql|postgres|pg|redis|ldap|ftp|admin|root|user)_?pass(?![a-z])",  # SMTP_PASS
)
# File types detect-secrets does not know, mapped to the one whose syntax they share: shell,
# .env and Dockerfiles assign unquoted values (`export DB_PASSWORD=...`) as config files do.
_CONFIG_EXTENSIONS = frozenset({".sh", ".bash", ".zsh", ".ksh", ".fish", ".env", ".envrc", ".dockerfile"})
# Dotfiles holding credentials in INI or key=value form (~/.aws/credentials, ~/.pypirc, ...).
_CONFIG_NAMES = frozenset({".env", ".envrc", "dockerfile", "containerfile", ".netrc", ".pgpass", "credentials",
                           ".pypirc", ".npmrc", ".git-credentials", ".s3cfg", ".boto"})
_SIBLING_TYPES = {".ts": "JAVASCRIPT", ".tsx": "JAVASCRIPT", ".jsx": "JAVASCRIPT", ".mjs": "JAVASCRIPT",
                  ".cjs": "JAVASCRIPT", ".h": "C", ".hpp": "C_PLUS_PLUS", ".hh": "C_PLUS_PLUS",
                  ".cc": "C_PLUS_PLUS", ".cxx": "C_PLUS_PLUS", ".kt": "JAVA", ".scala": "JAVA"}
# What a keyword match holds when it is not a credential. Each is a look-alike that the labelled
# set (tests/data/secrets_labelled.jsonl) holds, and that detect-secrets' own filters miss.
_NOT_VALUES = frozenset("""none null nil true false undefined empty required optional unset n/a
    password passwd pass pwd secret secrets token key apikey api_key changeme change_me replaceme
    foo bar baz qux foobar test testing dummy example sample admin root user guest default""".split())
_PLACEHOLDER = re.compile(r"your|example|placeholder|change_?me|replace|redacted|dummy|xxx|\*\*\*|\.\.\.|…", re.I)
# Letters only (and `_.-`): a name or a word, not a generated credential: "password", "DB_PASSWORD",
# "X-API-Key", "bearer", "string?" (a schema's type), "minutes". A password that is one dictionary
# word is on every cracking list; missing it is the price of not rewriting field names.
_NAME_LIKE = re.compile(r"[A-Za-z][A-Za-z_.\-]*\??", re.ASCII)
# The last word of a name that holds a secret's metadata, not the secret: PASSWORD_FIELD,
# api_key_header, secretName, password_min_length, private_key_path, token_type, SECRET_KEY_ENV.
_METADATA_WORDS = frozenset("""field fields name names env var variable param params arg args header
    prompt label help text msg message hint title description len length min max size type types kind
    hash hasher hashers algorithm algo policy mode regex re pattern format fmt column col attr attribute
    path file filename dir folder url uri endpoint prefix suffix id ids template placeholder error
    reset expiry expires expiration ttl timeout count version provider backend store class source
    ref refs lookup location manager input widget validator strength rules used date time at created
    updated changed age""".split())
# Each keyword (detect-secrets' and ours) holds one of these: the cheap prefilter.
_KEYWORD_STEMS = re.compile(r"key|pass|pwd|secret|contras|token")
_NAME_STARTS = ("keyp", "key_p", "passw", "passp", "pwd", "secret", "contras")  # how a keyword can start
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_CAMEL_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", re.ASCII)


@lru_cache(maxsize=1)
def _keyword_tables() -> tuple[re.Pattern, dict, dict]:
    """(keyword prefilter, {FileType: {regex: value group}}, default table), from detect-secrets."""
    from detect_secrets.plugins import keyword

    names = (*keyword.DENYLIST, *_KEYWORDS_ADDED)
    unstemmed = [name for name in names if not _KEYWORD_STEMS.search(name)]
    if unstemmed:  # a detect-secrets update added a keyword the prefilter would never look for
        raise RuntimeError(f"keywords without a prefilter stem: {unstemmed}")
    ours = "|".join(names)
    theirs = "|".join(keyword.DENYLIST)
    widened: dict = {}

    def widen(table: dict) -> dict:
        out = {}
        for regex, group in table.items():
            if regex not in widened:  # the tables share their regexes
                if theirs not in regex.pattern:
                    raise RuntimeError(f"detect-secrets' keyword regex changed shape: {regex.pattern[:80]}")
                widened[regex] = re.compile(regex.pattern.replace(theirs, ours), regex.flags)
            out[widened[regex]] = group
        return out

    by_type = {file_type: widen(table) for file_type, table in keyword.REGEX_BY_FILETYPE.items()}
    return re.compile(ours, re.I), by_type, widen(keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)


def _keyword_table(path: str | None) -> dict:
    """detect-secrets' regexes for the file's type (its own default, quotes required, when the
    type is unknown or no path is given)."""
    from detect_secrets.util.filetype import FileType, determine_file_type

    _, by_type, default = _keyword_tables()
    if not path:
        return default
    name = os.path.basename(path).lower()
    ext = os.path.splitext(name)[1]
    if ext in _CONFIG_EXTENSIONS or name in _CONFIG_NAMES or name.startswith((".env.", "dockerfile.")):
        return by_type[FileType.CONFIG]
    file_type = FileType[_SIBLING_TYPES[ext]] if ext in _SIBLING_TYPES else determine_file_type(name)
    return by_type.get(file_type, default)


def _is_metadata_name(name: str) -> bool:
    """The variable names a secret's field, file, length, type...: its last word says so."""
    words = _CAMEL_WORD.findall(name)
    return bool(words) and words[-1].lower() in _METADATA_WORDS


def _is_keyword_value(value: str, name: str, assignment: str) -> bool:
    """Whether a keyword match is a credential. `name` is the variable (`DATABASE_PASSWORD`),
    `assignment` the line from the name on (`password = get_password()`: detect-secrets'
    indirect-reference filter reads it; the whole line would let `conn = connect(password=
    "...")` pass for an indirect reference)."""
    from detect_secrets.filters import heuristic

    if (len(value) < 4 or value.lower() in _NOT_VALUES or _PLACEHOLDER.search(value)
            or any(c.isspace() for c in value)):  # prose: a prompt, a label, an error message
        return False
    if value.startswith(("/", "~/", "./", "../", "%", "arn:")):  # a path (`export PWD=/srv`), a
        return False  # format (`%s`), an AWS resource name (`arn:aws:iam::aws:policy/...`)
    if _NAME_LIKE.fullmatch(value) or _is_metadata_name(name):
        return False
    return not (heuristic.is_templated_secret(value) or heuristic.is_prefixed_with_dollar_sign(value)
                or heuristic.is_not_alphanumeric_string(value) or heuristic.is_sequential_string(value)
                or heuristic.is_potential_uuid(value) or heuristic.is_indirect_reference(assignment)
                or heuristic.is_likely_id_string(value, assignment) or _is_documented_example(value))


@lru_cache(maxsize=1)
def _lower_hint() -> re.Pattern:
    return re.compile(_keyword_tables()[0].pattern)


def _keyword_hits(text: str, hint: re.Pattern):
    """The keyword spans in text, in order. A case-insensitive alternation of 22 names tried at
    every position runs at ~2.5 MB/s; so the lowercased text is searched for the few literal
    stems every keyword holds (at ~150 MB/s), and for the keywords (case-sensitively, several
    times faster) only around those."""
    low = text.lower()
    if len(low) != len(text):  # a character whose lower case is longer ('İ'): offsets would drift
        yield from hint.finditer(text)
        return
    lower_hint = _lower_hint()
    done = 0
    for stem in _KEYWORD_STEMS.finditer(low):
        start = stem.start()
        if not (start and low[start - 1] in _NAME_CHARS) and not low.startswith(_NAME_STARTS, start):
            continue  # `pass`, `key`, `token` starting a name: no keyword starts so (saves 4 in 5)
        # a keyword reaches at most 10 characters before its stem (`database_pass`) and 12 after
        # (`key_password`, `passphrase`, the lookahead of `_pass(?![a-z])`)
        at = lower_hint.search(low, max(done, stem.start() - 10), stem.end() + 12)
        if at is not None:
            done = at.end()
            yield at


def _keyword_secrets(text: str, path: str | None) -> list[tuple[int, int, str]]:
    """Values assigned to (or compared with) secret-named variables. Only lines that hold a
    keyword are matched (one prefilter search over the text), and at most 300 characters either
    side of it, which bounds detect-secrets' backtracking on long lines."""
    hint, _, _ = _keyword_tables()
    table = None
    spans, done = [], -1
    for m in _keyword_hits(text, hint):
        start, end = m.span()
        if end <= done:
            continue  # a second keyword in a window already matched
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        lo, hi = max(line_start, start - 300), min(len(text) if line_end == -1 else line_end, end + 300)
        done = hi if hi - lo < 600 else end  # a whole line, or only this keyword's stretch of a long one
        window = text[lo:hi]
        table = table if table is not None else _keyword_table(path)
        for regex, group in table.items():
            for match in regex.finditer(window):
                if not match.group(group):
                    continue
                value_start, value_end = match.span(group)
                # the variable: the identifier around the keyword that the regex matched
                at = hint.search(window, match.start(), match.end())
                name_start, name_end = at.span() if at else (value_start, value_start)
                while name_start > 0 and (window[name_start - 1].isalnum() or window[name_start - 1] == "_"):
                    name_start -= 1
                while name_end < len(window) and (window[name_end].isalnum() or window[name_end] == "_"):
                    name_end += 1
                if window[max(0, name_start - 2):name_start] == "::":
                    continue  # a qualified type name (`"AWS::MSK::BatchScramSecret": "<schema hash>"`)
                value = match.group(group)
                if _is_keyword_value(value, window[name_start:name_end], window[min(name_start, value_start):]):
                    spans.append((lo + value_start, lo + value_end, "secret"))
    return spans


def _basic_auth(text: str) -> list[tuple[int, int, str]]:
    """The password of `scheme://user:password@host` (detect-secrets' BasicAuthDetector regex),
    unless templated (`${DB_PASS}`, `{password}`) or a placeholder (`user:password@`)."""
    from detect_secrets.plugins.basic_auth import BasicAuthDetector

    spans = []
    for regex in BasicAuthDetector.denylist:
        for m in regex.finditer(text):
            value = m.group(1)
            start = m.start(1)
            if _is_keyword_value(value, "", text[start:start + len(value)]):
                spans.append((start, m.end(1), "secret"))
    return spans


# ---------------------------------------------------------------- redaction
def find(text: str, path: str | None = None) -> list[tuple[int, int, str]]:
    """Non-overlapping PII spans `(start, end, kind)` in text order; where two overlap, the one
    starting first (then the longer) wins, except that a secret wins over any email or address
    it overlaps (`https://user:<token>@github.com` holds an "email" from the token on). `path`
    (the file's name) picks detect-secrets' keyword regexes for its type; without it, those for
    code (values must be quoted)."""
    secrets = _first_wins(_secrets(text, path))
    others = _emails(text) if "@" in text else []
    others += _ipv4s(text)
    others += _ipv6s(text)
    if secrets and others:
        starts = [s[0] for s in secrets]
        others = [o for o in others if not _overlaps(o, secrets, starts)]
    return _first_wins(secrets + others)


def _first_wins(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    spans.sort(key=lambda s: (s[0], -s[1]))
    kept, reach = [], 0
    for span in spans:
        if span[0] >= reach:
            kept.append(span)
            reach = span[1]
    return kept


def _overlaps(span: tuple[int, int, str], kept: list[tuple[int, int, str]], starts: list[int]) -> bool:
    """Whether `span` overlaps one of `kept` (sorted, non-overlapping; `starts` their starts)."""
    i = bisect.bisect_left(starts, span[1])  # kept[:i] start before span ends
    return i > 0 and kept[i - 1][1] > span[0]


def redact(text: str, path: str | None = None) -> tuple[str, dict[str, int]]:
    """The text with every PII span replaced by its kind's placeholder, and how many of each
    kind were replaced. The counts always hold all three kinds (`email`, `ip_address`,
    `secret`), zeros included, so they sum across files without key checks. Text without
    PII is returned as the same object. `path`: see `find`."""
    counts = dict.fromkeys(KINDS, 0)
    spans = find(text, path)
    if not spans:
        return text, counts
    parts, last = [], 0
    for start, end, kind in spans:
        parts += (text[last:start], PLACEHOLDERS[kind])
        counts[kind] += 1
        last = end
    parts.append(text[last:])
    return "".join(parts), counts
