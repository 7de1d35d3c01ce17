"""Sending-domain checks: what DNS should hold for a domain Mailgate sends from, and verdicts.

Pure functions over records already looked up (the service does the DNS): each builds one
:class:`Check` with a status, what was found, and, unless it passes, the exact record to
publish. Kinds:

* ``dkim`` — the TXT record ``{selector}._domainkey.{domain}`` of each DKIM key carries
  the key's public key (RFC 6376 section 3.6.1);
* ``spf`` — the domain's SPF record authorises the server mail is routed through
  (RFC 7208; the evaluation is ``mailgate.dnscheck.spf``);
* ``dmarc`` — ``_dmarc.{domain}`` holds a DMARC record and its policy (RFC 7489 6.3);
* ``alignment`` — the DKIM ``d=`` domain aligns with the From domain under the record's
  ``adkim`` mode (RFC 7489 3.1.1);
* ``mx`` — the bounce address's domain (the envelope sender: the account's address) has
  an MX record, so bounces come back (RFC 5321 5.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    WARN = "warn"  # works, but weaker than it should be (DMARC p=none, SPF softfail...)
    ERROR = "error"  # DNS gave no usable answer: could not be checked


@dataclass(frozen=True, slots=True)
class Record:
    """A DNS record to publish."""

    type: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Check:
    kind: str
    name: str
    status: Status
    detail: str
    found: tuple[str, ...] = ()
    publish: Record | None = None

    @property
    def ok(self) -> bool:
        return self.status in (Status.PASS, Status.WARN)


@dataclass(frozen=True, slots=True)
class DomainReport:
    domain: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def parse_tags(text: str) -> dict[str, str]:
    """A tag list (``v=DKIM1; k=rsa; p=…``; RFC 6376 3.2, RFC 7489 6.4), names lower-cased,
    folding whitespace removed from values."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), "".join(value.split()))
    return tags


def dkim_check(name: str, expected: str, found: list[str], *, error: str | None = None) -> Check:
    """The key record ``name`` against the record Mailgate generated (``expected``)."""
    publish = Record("TXT", name, expected)
    if error is not None:
        return Check("dkim", name, Status.ERROR, error, publish=publish)
    want = parse_tags(expected).get("p", "")
    keys = [parse_tags(txt) for txt in found if "p" in parse_tags(txt)]
    if not found:
        return Check("dkim", name, Status.FAIL, f"No TXT record at {name}.", publish=publish)
    if any(tags.get("p") == want for tags in keys):
        return Check("dkim", name, Status.PASS, "The published key is this key.", tuple(found))
    if any(tags.get("p") == "" for tags in keys):
        detail = "The record revokes the key (empty p=): receivers fail every signature."
    elif keys:
        detail = "The record holds another public key: signatures by this key fail."
    else:
        detail = "The TXT record is not a DKIM key record (no p= tag)."
    return Check("dkim", name, Status.FAIL, detail, tuple(found), publish)


def no_dkim_key(domain: str) -> Check:
    return Check(
        "dkim",
        domain,
        Status.FAIL,
        f"No DKIM key signs mail from {domain}: generate one (POST …/dkim-keys) and publish "
        "its record.",
    )


def spf_mechanism(engine: str, host: str) -> str:
    """The SPF term that authorises mail sent through ``host`` with ``engine``: the
    provider's include for the big services (their relays are not the submission host),
    else the host's own addresses (``a:host``)."""
    name = host.lower().rstrip(".")
    if engine == "sendgrid" or name.endswith("sendgrid.net"):
        return "include:sendgrid.net"
    if engine == "msgraph" or name.endswith(("office365.com", "outlook.com")):
        return "include:spf.protection.outlook.com"
    if name.endswith(("gmail.com", "google.com", "googlemail.com")):
        return "include:_spf.google.com"
    if name.endswith("amazonaws.com"):
        return "include:amazonses.com"
    return f"a:{name}"


def spf_with(existing: str | None, term: str) -> str:
    """``existing`` with ``term`` added before its ``all`` (or ``redirect``); a new record
    ending in ``~all`` when there is none."""
    if not existing:
        return f"v=spf1 {term} ~all"
    parts = existing.split()
    for index, part in enumerate(parts):
        bare = part.lstrip("+-~?").lower()
        if bare == "all" or bare.startswith("redirect="):
            return " ".join([*parts[:index], term, *parts[index:]])
    return " ".join([*parts, term])


def spf_check(
    domain: str,
    server: str,
    term: str,
    records: list[str],
    result: str,
    *,
    notes: tuple[str, ...] = (),
) -> Check:
    """The verdict of the SPF evaluation ``result`` for the server named ``server``."""
    existing = records[0] if len(records) == 1 else None
    suggested = Record("TXT", domain, spf_with(existing, term))
    extra = f" ({'; '.join(notes)})" if notes else ""
    found = tuple(records)
    if result == "pass":
        return Check("spf", domain, Status.PASS, f"SPF authorises {server}.", found)
    if result == "temperror":
        return Check("spf", domain, Status.ERROR, f"SPF could not be evaluated{extra}.", found)
    if not records:
        detail = f"{domain} has no SPF record: receivers cannot tell {server} may send for it."
        return Check("spf", domain, Status.FAIL, detail, found, suggested)
    if len(records) > 1:
        detail = f"{domain} has {len(records)} SPF records; receivers treat that as an error."
        return Check("spf", domain, Status.FAIL, detail + " Publish one.", found, suggested)
    detail = f"SPF gives {result} for {server}{extra}: add {term}."
    return Check("spf", domain, Status.FAIL, detail, found, suggested)


def spf_not_applicable(domain: str, server: str) -> Check:
    return Check(
        "spf",
        domain,
        Status.PASS,
        f"{server} keeps mail in Mailgate (capture): nothing to authorise.",
    )


def dmarc_records(txts: list[str]) -> list[str]:
    return [t for t in txts if t.strip().lower().replace(" ", "").startswith("v=dmarc1")]


def dmarc_check(domain: str, name: str, found: list[str]) -> tuple[Check, str]:
    """The DMARC record at ``name`` and the ``adkim`` mode it sets (``r`` by default)."""
    suggested = Record("TXT", f"_dmarc.{domain}", "v=DMARC1; p=quarantine; adkim=r; aspf=r")
    records = dmarc_records(found)
    if not records:
        detail = f"No DMARC record at _dmarc.{domain}: receivers apply no policy to it."
        return Check("dmarc", f"_dmarc.{domain}", Status.FAIL, detail, (), suggested), "r"
    if len(records) > 1:
        detail = "More than one DMARC record: receivers ignore them all (RFC 7489 6.6.3)."
        return Check("dmarc", name, Status.FAIL, detail, tuple(records), suggested), "r"
    tags = parse_tags(records[0])
    policy = tags.get("p", "").lower()
    adkim = tags.get("adkim", "r").lower()
    inherited = "" if name == f"_dmarc.{domain}" else f" (inherited from {name})"
    if policy in ("quarantine", "reject"):
        detail = f"DMARC policy {policy}{inherited}."
        return Check("dmarc", name, Status.PASS, detail, tuple(records)), adkim
    if policy == "none":
        better = records[0].replace("p=none", "p=quarantine")
        detail = (
            f"DMARC policy none{inherited}: reports only, spoofed mail is still delivered; "
            "move to quarantine once reports are clean."
        )
        return (
            Check("dmarc", name, Status.WARN, detail, tuple(records), Record("TXT", name, better)),
            adkim,
        )
    detail = f"The DMARC record has no valid policy (p={policy or 'missing'})."
    return Check("dmarc", name, Status.FAIL, detail, tuple(records), suggested), adkim


def alignment_check(domain: str, signing_domain: str | None, adkim: str) -> Check:
    """Whether DKIM's ``d=`` (``signing_domain``) aligns with the From domain ``domain``."""
    if signing_domain is None:
        return Check(
            "alignment",
            domain,
            Status.FAIL,
            "Mail from this domain is not DKIM-signed, so DKIM cannot align with From.",
        )
    if signing_domain == domain:
        return Check("alignment", domain, Status.PASS, f"d={domain} is the From domain.")
    if adkim == "s":
        return Check(
            "alignment",
            domain,
            Status.FAIL,
            f"d={signing_domain} differs from the From domain and DMARC asks for strict "
            f"alignment (adkim=s): generate a DKIM key for {domain}.",
        )
    return Check(
        "alignment",
        domain,
        Status.PASS,
        f"d={signing_domain} aligns with {domain} under relaxed alignment (adkim=r).",
    )


def mx_check(domain: str, mx: list[tuple[int, str]], *, error: str | None = None) -> Check:
    """The bounce domain has somewhere to receive bounces."""
    found = tuple(f"{pref} {host}" for pref, host in mx)
    if error is not None:
        return Check("mx", domain, Status.ERROR, error)
    if not mx:
        return Check(
            "mx",
            domain,
            Status.FAIL,
            f"{domain} has no MX record: bounces to addresses at {domain} cannot be delivered.",
            publish=Record("MX", domain, f"10 mail.{domain}"),
        )
    if len(mx) == 1 and mx[0][1] in ("", ".", "@"):
        return Check("mx", domain, Status.FAIL, f"{domain} has a null MX: it receives no mail.")
    return Check("mx", domain, Status.PASS, f"Bounces are received by {mx[0][1]}.", found)
