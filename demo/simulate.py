"""The hidden churn process and the facts it leaves behind, as numpy arrays (no database).

Time is a float number of days relative to `as_of` (0 is as-of midnight, negative is the past),
so every generated instant is compared and shifted with plain arithmetic. Each customer gets
a latent churn propensity (plan and noise) and a Weibull time to churn with a falling hazard
(new accounts churn more). Accounts whose churn falls before as-of are the churners; accounts
that would churn within `PATH_HORIZON` days after as-of are already on the path and show early
signs. Each account on the path shows only some signals (disengagement, a ticket spike, failed
payments or a downgrade, low NPS) in the 30–120 days before churning, and a share of retained
accounts goes through a rough patch that looks the same, so the signal is learnable but noisy.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from demo import vocab

HISTORY_DAYS = 730  # signups are spread over the two years before as-of
SESSION_DAYS = 365  # sessions are kept for the last year
PATH_HORIZON = 120  # accounts churning this many days after as-of already show the signs
WEIBULL_SHAPE = 0.75
WEIBULL_SCALE = 3000.0
PLAN_RISK = np.array([0.45, 0.2, -0.15, -0.7])
PLAN_SESSIONS_PER_YEAR = np.array([125.0, 160.0, 200.0, 280.0])
PLAN_TICKETS_PER_MONTH = np.array([0.12, 0.2, 0.35, 0.7])
PLAN_SEATS = np.array([2.0, 5.0, 14.0, 55.0])
SESSION_CHUNK = 2000  # customers per block of the day grid; fixed so draws never depend on size
ACTION_POOL = 48  # distinct action lists per length
MAX_ACTIONS = 6

TICKET_STATUSES = ("open", "pending", "solved", "closed")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")
BILLING_KINDS = ("payment_succeeded", "payment_failed", "subscription_changed", "subscription_cancelled")
SUCCEEDED, FAILED, CHANGED, CANCELLED = range(4)


@dataclass
class Book:
    """Everything generated about the customers, before it is written."""

    as_of: dt.datetime
    seed: int
    n: int
    activity_scale: float
    # Customers.
    name: list[str] = field(repr=False)
    email: list[str] = field(repr=False)
    company: list[str] = field(repr=False)
    external_id: list[str | None] = field(repr=False)
    owner: np.ndarray = field(repr=False)  # index into the CSM list
    plan0: np.ndarray = field(repr=False)
    mrr0: np.ndarray = field(repr=False)
    plan1: np.ndarray = field(repr=False)
    mrr1: np.ndarray = field(repr=False)
    change_t: np.ndarray = field(repr=False)  # NaN: no plan change
    signup_t: np.ndarray = field(repr=False)
    churn_t: np.ndarray = field(repr=False)  # may lie after as-of (not churned yet)
    churned: np.ndarray = field(repr=False)
    latent: np.ndarray = field(repr=False)
    # The hidden process, kept so interventions and alerts can follow it.
    on_path: np.ndarray = field(repr=False)
    signals: dict[str, np.ndarray] = field(repr=False)
    rough: np.ndarray = field(repr=False)
    episode: tuple[np.ndarray, np.ndarray] = field(repr=False)
    # Facts; each group of arrays is sorted by customer, then time.
    sessions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    tickets: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    nps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    billing: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    action_pool: list[str] = field(default_factory=list, repr=False)
    # Sessions per customer and day at activity scale 1 (the last SESSION_DAYS days), before
    # thinning by --activity-scale: the scores read this, so they do not depend on the scale.
    activity: np.ndarray | None = field(default=None, repr=False)
    last_login: np.ndarray | None = field(default=None, repr=False)  # NaN: never
    feature_usage: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def end_t(self) -> np.ndarray:
        """When each customer's facts stop: churn for churners, as-of for the others."""
        return np.where(self.churned, self.churn_t, 0.0)

    @property
    def plan(self) -> np.ndarray:
        """The plan at the end (after a plan change that happened before churn or as-of)."""
        return np.where(self.changed_before(self.end_t), self.plan1, self.plan0)

    @property
    def mrr(self) -> np.ndarray:
        return np.where(self.changed_before(self.end_t), self.mrr1, self.mrr0)

    def changed_before(self, t: np.ndarray | float) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return ~np.isnan(self.change_t) & (self.change_t < t)

    @property
    def breadth(self) -> np.ndarray:
        """How many product features each customer uses (seats aside)."""
        return sum((self.feature_usage[name] > 0).astype(np.int64) for name in vocab.FEATURES)


def rng_streams(seed: int) -> list[np.random.Generator]:
    """Independent generators per phase, so changing one phase never shifts another's draws."""
    return np.random.default_rng(seed).spawn(12)


def _cumcount(counts: np.ndarray) -> np.ndarray:
    """0, 1, ... within each run of a `np.repeat(..., counts)` expansion."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


def _uniform_between(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return low + (high - low) * rng.random(low.shape[0])


def _names(rng: np.random.Generator, n: int) -> tuple[list[str], list[str], list[str]]:
    """Unique companies (and so unique e-mail domains) and a contact person for each."""
    heads, tails, forms = vocab.COMPANY_HEADS, vocab.COMPANY_TAILS, vocab.COMPANY_FORMS
    space = len(heads) * len(tails) * len(forms)
    picks = rng.choice(space, size=min(n, space), replace=False)
    if n > space:  # more customers than names: number the rest
        picks = np.concatenate([picks, rng.integers(0, space, n - space)])
    h, rest = np.divmod(picks, len(tails) * len(forms))
    t, f = np.divmod(rest, len(forms))
    tld = rng.integers(0, len(vocab.DOMAIN_TLDS), n)
    first = rng.integers(0, len(vocab.FIRST_NAMES), n)
    last = rng.integers(0, len(vocab.LAST_NAMES), n)
    style = rng.integers(0, 4, n)
    names, emails, companies = [], [], []
    for i in range(n):
        brand = heads[h[i]] + tails[t[i]]
        company = f"{brand} {forms[f[i]]}"
        domain = f"{brand}{forms[f[i]]}".lower() + (str(i) if i >= space else "") + vocab.DOMAIN_TLDS[tld[i]]
        fn, ln = vocab.FIRST_NAMES[first[i]], vocab.LAST_NAMES[last[i]]
        local = (f"{fn}.{ln}", f"{fn}", f"{fn[0]}{ln}", f"{fn}_{ln}")[style[i]].lower()
        names.append(f"{fn} {ln}")
        emails.append(f"{local}@{domain}")
        companies.append(company)
    return names, emails, companies


def _external_ids(rng: np.random.Generator, n: int) -> list[str | None]:
    """About 40 % of the customers came from Stripe and carry a `cus_…` id."""
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
    has = rng.random(n) < 0.4
    chars = alphabet[rng.integers(0, len(alphabet), (n, 14))]
    return ["cus_" + "".join(row) if flag else None for flag, row in zip(has, chars, strict=True)]


def _action_pool(rng: np.random.Generator) -> list[str]:
    """JSON action lists, `ACTION_POOL` of each length 1..MAX_ACTIONS, indexed length-major."""
    weights = np.array([6, 4, 2, 1.5, 1.5, 1, 1, 0.6, 0.8, 1, 0.4, 0.5, 0.1, 1, 0.6])
    weights = weights / weights.sum()
    pool = []
    for length in range(1, MAX_ACTIONS + 1):
        for _ in range(ACTION_POOL):
            picks = rng.choice(len(vocab.ACTIONS), size=length, replace=False, p=weights)
            pool.append(json.dumps([vocab.ACTIONS[i] for i in picks]))
    return pool


def simulate(
    *,
    customers: int,
    seed: int,
    as_of: dt.datetime,
    csms: int,
    activity_scale: float = 1.0,
    tick: Callable[[str, int], None] | None = None,
) -> Book:
    """Draw the whole book of business. `tick(phase, amount)` reports progress."""
    tick = tick or (lambda phase, amount: None)
    streams = rng_streams(seed)
    rng = streams[0]
    n = customers

    plan0 = rng.choice(len(vocab.PLANS), size=n, p=vocab.PLAN_SHARE)
    medians, sigmas = np.array(vocab.PLAN_MRR_MEDIAN), np.array(vocab.PLAN_MRR_SIGMA)
    mrr0 = np.maximum(19.0, np.round(rng.lognormal(np.log(medians[plan0]), sigmas[plan0])))
    # More recent signups than old ones: the company is growing.
    signup_t = -1.0 - (HISTORY_DAYS - 1) * rng.random(n) ** 1.15
    latent = PLAN_RISK[plan0] + rng.normal(0.0, 0.6, n)
    time_to_churn = 14.0 + WEIBULL_SCALE * (rng.exponential(1.0, n) / np.exp(latent)) ** (1 / WEIBULL_SHAPE)
    churn_t = signup_t + time_to_churn
    churned = churn_t < 0
    end_t = np.where(churned, churn_t, 0.0)
    weights = rng.dirichlet(np.full(csms, 8.0))
    owner = rng.choice(csms, size=n, p=weights)

    on_path = churn_t < PATH_HORIZON
    silent = on_path & (rng.random(n) < 0.12)  # churners that look fine
    loud = on_path & ~silent
    tenure_at_churn = churn_t - signup_t
    onboarding = loud & (tenure_at_churn < 100)
    signals = {
        "disengage": (loud & (rng.random(n) < 0.85)) | onboarding,
        "support": loud & (rng.random(n) < 0.40),
        "payment": loud & (rng.random(n) < 0.30),
        "low_nps": loud & (rng.random(n) < 0.45),
        "onboarding": onboarding,
    }
    window = np.where(onboarding, tenure_at_churn, np.minimum(rng.uniform(30, 120, n), tenure_at_churn))
    signals["window"] = window
    signals["floor"] = np.where(onboarding, rng.uniform(0.05, 0.25, n), rng.uniform(0.02, 0.2, n))

    # Rough patches: retained accounts that look at risk for a while.
    episode_lo = np.maximum(signup_t + 20, -SESSION_DAYS)
    # The chance of a patch grows with the time the account was around, so patches are spread
    # evenly over the year instead of crowding into the short lives of new accounts.
    rough = ~on_path & (rng.random(n) < 0.2 * np.clip(-episode_lo / SESSION_DAYS, 0, 1)) & (episode_lo < -5)
    e0 = _uniform_between(rng, episode_lo, np.zeros(n))
    e1 = e0 + rng.uniform(20, 90, n)
    signals["rough_dip"] = rough & (rng.random(n) < 0.6)
    signals["dip"] = rng.uniform(0.25, 0.6, n)
    signals["rough_tickets"] = rough & (rng.random(n) < 0.45)
    signals["rough_payment"] = rough & (rng.random(n) < 0.25)
    signals["rough_nps"] = rough & (rng.random(n) < 0.35)

    # One plan change at most: upgrades for growing accounts, downgrades for some on the path.
    change = rng.random(n) < 0.12
    up = rng.random(n) < 0.7
    regular_t = _uniform_between(rng, signup_t + 30, end_t)
    path_dg = loud & (rng.random(n) < np.where(signals["payment"], 0.35, 0.10))
    path_lo = np.maximum(churn_t - window, signup_t + 10)
    path_hi = churn_t - 5
    path_dg &= path_lo < path_hi
    downgrade_t = _uniform_between(rng, path_lo, path_hi)
    path_dg &= downgrade_t < -0.5  # still ahead for some accounts on the path: not visible yet
    change_t = np.where(path_dg, downgrade_t, regular_t)
    change = (change & (end_t - signup_t > 45)) | path_dg
    up &= ~path_dg
    plan1 = np.clip(plan0 + np.where(up, 1, -1), 0, len(vocab.PLANS) - 1)
    same = plan1 == plan0
    ratio = np.where(
        same,
        np.where(up, rng.uniform(1.2, 1.6, n), rng.uniform(0.5, 0.8, n)),
        medians[plan1] / medians[plan0] * rng.lognormal(0, 0.15, n),
    )
    mrr1 = np.maximum(19.0, np.round(mrr0 * ratio))
    change_t = np.where(change, change_t, np.nan)
    signals["downgrade"] = path_dg

    names, emails, companies = _names(rng, n)
    book = Book(
        as_of=as_of,
        seed=seed,
        n=n,
        activity_scale=activity_scale,
        name=names,
        email=emails,
        company=companies,
        external_id=_external_ids(rng, n),
        owner=owner,
        plan0=plan0,
        mrr0=mrr0,
        plan1=plan1,
        mrr1=mrr1,
        change_t=change_t,
        signup_t=signup_t,
        churn_t=churn_t,
        churned=churned,
        latent=latent,
        on_path=on_path,
        signals=signals,
        rough=rough,
        episode=(e0, e1),
    )
    tick("customers", n)
    book.action_pool = _action_pool(streams[1])
    book.sessions = _sessions(book, streams[1], activity_scale, tick)
    book.tickets = _tickets(book, streams[2])
    book.nps = _nps(book, streams[3])
    book.billing = _billing(book, streams[4])
    book.last_login = _last_login(book, streams[5])
    book.feature_usage = _feature_usage(book, streams[5])
    tick("facts", 1)
    return book


def _engagement(book: Book, rows: slice, days: np.ndarray) -> np.ndarray:
    """Multiplier of each customer's normal activity on each day (rows × days), 1 = normal."""
    s = book.signals
    mid = days[None, :] + 0.5
    churn = book.churn_t[rows, None]
    window = s["window"][rows, None]
    floor = s["floor"][rows, None]
    ramp = np.clip((mid - (churn - window)) / window, 0.0, 1.0)
    declining = 1.0 - (1.0 - floor) * ramp**0.7  # drops early, then fades out
    never_took_off = floor + (1.0 - floor) * 0.45 * (1.0 - ramp)
    mult = np.where(s["onboarding"][rows, None], never_took_off, np.where(s["disengage"][rows, None], declining, 1.0))
    # Every account ramps up over its first weeks.
    age = np.maximum(mid - book.signup_t[rows, None], 0.0)
    mult = mult * (1.0 - 0.6 * np.exp(-age / 12.0))
    e0, e1 = book.episode
    in_dip = s["rough_dip"][rows, None] & (mid >= e0[rows, None]) & (mid < e1[rows, None])
    return np.where(in_dip, mult * s["dip"][rows, None], mult)


def _sessions(
    book: Book, rng: np.random.Generator, scale: float, tick: Callable[[str, int], None]
) -> dict[str, np.ndarray]:
    """Poisson session counts on a customer × day grid, then one row per session."""
    n = book.n
    days = np.arange(-SESSION_DAYS, 0, dtype=np.float64)  # start of each day
    weekday = (book.as_of.weekday() + days.astype(np.int64)) % 7
    week = np.where(weekday >= 5, 0.3, 1.0)
    week = week / week.mean()
    month = ((days + SESSION_DAYS) // 30).astype(np.int64)
    # Healthier accounts (low latent risk) use the product a bit more.
    rate = (
        PLAN_SESSIONS_PER_YEAR[book.plan0]
        / 365.0
        * rng.lognormal(-0.5 * 0.55**2, 0.55, n)
        * np.exp(-0.15 * (book.latent - book.latent.mean()))
    )
    month_noise = rng.lognormal(-0.5 * 0.25**2, 0.25, (n, int(month.max()) + 1))
    first_day = np.ceil(book.signup_t)  # sessions start the day after signup…
    stop_day = np.minimum(np.floor(book.churn_t), 0.0)  # …and end the day before churn (or as-of)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("customer", "started", "ended", "pages", "action")}
    book.activity = np.zeros((n, SESSION_DAYS), dtype=np.int16)
    for start in range(0, n, SESSION_CHUNK):
        rows = slice(start, min(n, start + SESSION_CHUNK))
        active = (days[None, :] >= first_day[rows, None]) & (days[None, :] < stop_day[rows, None])
        mult = _engagement(book, rows, days)
        lam = rate[rows, None] * mult * week[None, :] * month_noise[rows][:, month] * max(scale, 1.0)
        counts = rng.poisson(np.where(active, lam, 0.0))
        book.activity[rows] = np.minimum(counts, np.iinfo(np.int16).max)
        if scale < 1:  # thin the sessions that are written, not the activity that is scored
            counts = rng.binomial(counts, scale)
        cell = np.repeat(np.arange(counts.size), counts.ravel())
        local, day = np.divmod(cell, SESSION_DAYS)
        m = mult[local, day]
        hours = np.clip(rng.normal(14.0, 3.2, cell.size), 0.05, 23.95)
        started = days[day] + hours / 24.0
        minutes = np.clip(rng.lognormal(np.log(13.0), 0.75, cell.size) * (0.35 + 0.65 * m), 0.5, 240.0)
        customer = local + start
        ended = np.minimum(started + minutes / 1440.0, np.where(book.churned, book.churn_t, 0.0)[customer])
        pages = 1 + rng.poisson(minutes * 0.45 * (0.5 + 0.5 * m))
        length = np.clip(1 + pages // 5 + rng.poisson(0.4, cell.size), 1, MAX_ACTIONS)
        action = (length - 1) * ACTION_POOL + rng.integers(0, ACTION_POOL, cell.size)
        order = np.lexsort((started, customer))
        parts["customer"].append(customer[order].astype(np.int64))
        parts["started"].append(started[order])
        parts["ended"].append(ended[order])
        parts["pages"].append(pages[order].astype(np.int64))
        parts["action"].append(action[order].astype(np.int64))
        tick("sessions", rows.stop - rows.start)
    return {key: np.concatenate(value) for key, value in parts.items()}


def _in_window(book: Book, rng: np.random.Generator, who: np.ndarray, low: np.ndarray, high: np.ndarray, count):
    """Events for customers `who`: `count` each in [low, high), skewed towards the end (things
    get worse just before churn); events after the customer's end (churn or as-of) are dropped,
    so a window still in the future shows only its beginning."""
    low = np.maximum(low, book.signup_t + 1.0)
    who = who & (high > low)
    counts = np.where(who, count, 0)
    customer = np.repeat(np.arange(book.n), counts)
    t = low[customer] + (high - low)[customer] * np.sqrt(rng.random(customer.size))
    keep = t < book.end_t[customer] - 0.01
    return customer[keep], t[keep]


def _sorted(columns: dict[str, np.ndarray], time_key: str) -> dict[str, np.ndarray]:
    order = np.lexsort((columns[time_key], columns["customer"]))
    return {key: value[order] for key, value in columns.items()}


def _tickets(book: Book, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, s = book.n, book.signals
    end = book.end_t
    life = end - book.signup_t
    monthly = PLAN_TICKETS_PER_MONTH[book.plan0] * rng.lognormal(-0.125, 0.5, n)
    base_n = rng.poisson(monthly * life / 30.0)
    base_c = np.repeat(np.arange(n), base_n)
    base_t = book.signup_t[base_c] + life[base_c] * rng.random(base_c.size)
    spike_c, spike_t = _in_window(
        book, rng, s["support"], book.churn_t - s["window"], book.churn_t, 2 + rng.poisson(3.0, n)
    )
    e0, e1 = book.episode
    rough_c, rough_t = _in_window(book, rng, s["rough_tickets"], e0, e1, 1 + rng.poisson(1.5, n))
    customer = np.concatenate([base_c, spike_c, rough_c])
    opened = np.concatenate([base_t, spike_t, rough_t])
    kind = np.concatenate([np.zeros(base_c.size), np.ones(spike_c.size), np.full(rough_c.size, 2)]).astype(int)
    k = customer.size
    priority_p = np.array([[0.35, 0.45, 0.15, 0.05], [0.05, 0.30, 0.40, 0.25], [0.15, 0.45, 0.30, 0.10]])
    cumulative = priority_p.cumsum(axis=1)[kind]
    priority = (rng.random(k)[:, None] > cumulative).sum(axis=1)
    hours = np.where(kind == 0, rng.lognormal(np.log(20), 1.0, k), rng.lognormal(np.log(96), 0.9, k))
    solved = opened + hours / 24.0
    # A churned account's leftovers are closed within two weeks of the churn.
    gone = book.churned[customer] & (solved > book.churn_t[customer] + 14)
    solved = np.where(gone, book.churn_t[customer] + rng.uniform(0, 14, k), solved)
    unsolved = solved >= 0
    status = np.where(unsolved, np.where(rng.random(k) < 0.65, 0, 1), np.where(solved > -7, 2, 3))
    routine, escalation = len(vocab.TICKET_SUBJECTS_ROUTINE), len(vocab.TICKET_SUBJECTS_ESCALATION)
    escalated = (kind > 0) & (rng.random(k) < 0.8)
    subject = np.where(escalated, routine + rng.integers(0, escalation, k), rng.integers(0, routine, k))
    return _sorted(
        {
            "customer": customer,
            "opened": opened,
            "solved": np.where(unsolved, np.nan, solved),
            "status": status,
            "priority": priority,
            "subject": subject,
        },
        "opened",
    )


def _nps(book: Book, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, s = book.n, book.signals
    end = book.end_t
    responder = rng.random(n) < 0.8
    p_answer = rng.uniform(0.35, 0.8, n)
    first = book.signup_t + 30 + rng.uniform(0, 20, n)
    surveys = np.where(end > first, np.floor((end - first) / 91.0) + 1, 0).astype(np.int64)
    customer = np.repeat(np.arange(n), surveys)
    t = first[customer] + 91.0 * _cumcount(surveys) + rng.normal(0, 7, customer.size)
    t = np.clip(t, book.signup_t[customer] + 1, end[customer] - 0.01)
    keep = responder[customer] & (rng.random(customer.size) < p_answer[customer])
    customer, t = customer[keep], t[keep]
    forced_c, forced_t = _in_window(
        book, rng, s["low_nps"] & (rng.random(n) < 0.8), book.churn_t - s["window"], book.churn_t, 1
    )
    e0, e1 = book.episode
    rough_c, rough_t = _in_window(book, rng, s["rough_nps"] & (rng.random(n) < 0.7), e0, e1, 1)
    customer = np.concatenate([customer, forced_c, rough_c])
    t = np.concatenate([t, forced_t, rough_t])
    k = customer.size
    satisfaction = np.clip(8.3 - 0.7 * (book.latent - book.latent.mean()) + rng.normal(0, 1.2, n), 0, 10)
    score = np.clip(np.round(rng.normal(satisfaction[customer], 1.0)), 0, 10)
    churn, window = book.churn_t[customer], s["window"][customer]
    unhappy = s["low_nps"][customer] & (t >= churn - window)
    score = np.where(unhappy, rng.integers(0, 6, k), score)
    rough = s["rough_nps"][customer] & (t >= e0[customer]) & (t < e1[customer])
    score = np.where(rough, rng.integers(3, 7, k), score).astype(np.int64)
    bucket = np.where(score >= 9, 0, np.where(score >= 7, 1, 2))
    sizes = np.array(
        [len(vocab.NPS_COMMENTS_PROMOTER), len(vocab.NPS_COMMENTS_PASSIVE), len(vocab.NPS_COMMENTS_DETRACTOR)]
    )
    comment = np.where(rng.random(k) < 0.55, (rng.random(k) * sizes[bucket]).astype(np.int64), -1)
    return _sorted({"customer": customer, "t": t, "score": score, "bucket": bucket, "comment": comment}, "t")


def _billing(book: Book, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Monthly invoices (some failing, most retried), the plan change and the cancellation."""
    n, s = book.n, book.signals
    end = book.end_t
    month = 30.44
    invoices = (np.floor((end - book.signup_t) / month) + 1).astype(np.int64)
    customer = np.repeat(np.arange(n), invoices)
    t = book.signup_t[customer] + month * _cumcount(invoices) + 0.01
    keep = t < end[customer]
    customer, t = customer[keep], t[keep]
    with np.errstate(invalid="ignore"):
        after_change = ~np.isnan(book.change_t[customer]) & (t >= book.change_t[customer])
    amount = np.where(after_change, book.mrr1[customer], book.mrr0[customer])
    churn, window = book.churn_t[customer], s["window"][customer]
    e0, e1 = book.episode
    in_path = s["payment"][customer] & (t >= churn - window)
    in_rough = s["rough_payment"][customer] & (t >= e0[customer]) & (t < e1[customer])
    p_fail = np.where(in_path, 0.7, np.where(in_rough, 0.6, 0.015))
    failed = rng.random(customer.size) < p_fail
    p_retry = np.where(in_path, 0.3, np.where(in_rough, 0.8, 0.9))
    retry_t = t + rng.uniform(2, 6, customer.size)
    retried = failed & (rng.random(customer.size) < p_retry) & (retry_t < end[customer])
    changed = np.flatnonzero(~np.isnan(book.change_t))
    cancelled = np.flatnonzero(book.churned)
    none = np.full(customer.size + int(retried.sum()), np.nan)
    columns = {
        "customer": np.concatenate([customer, customer[retried], changed, cancelled]),
        "kind": np.concatenate(
            [
                np.where(failed, FAILED, SUCCEEDED),
                np.full(int(retried.sum()), SUCCEEDED),
                np.full(changed.size, CHANGED),
                np.full(cancelled.size, CANCELLED),
            ]
        ),
        "t": np.concatenate([t, retry_t[retried], book.change_t[changed], book.churn_t[cancelled]]),
        "amount": np.concatenate(
            [amount, amount[retried], book.mrr1[changed] - book.mrr0[changed], np.zeros(cancelled.size)]
        ),
        "mrr_after": np.concatenate([none, book.mrr1[changed], np.zeros(cancelled.size)]),
        "plan_after": np.concatenate(
            [
                np.full(customer.size + int(retried.sum()), -1),
                book.plan1[changed],
                np.full(cancelled.size, -1),
            ]
        ),
    }
    return _sorted(columns, "t")


def _last_login(book: Book, rng: np.random.Generator) -> np.ndarray:
    """Latest session; for accounts gone before the session year, a few days before they churned."""
    last = np.full(book.n, -np.inf)
    np.maximum.at(last, book.sessions["customer"], book.sessions["started"])
    end = book.end_t
    before_window = np.isinf(last) & (end < -SESSION_DAYS + 1)
    guess = end - rng.uniform(1, 20, book.n)
    guess = np.maximum(guess, book.signup_t + 0.1)
    return np.where(np.isinf(last), np.where(before_window, guess, np.nan), last)


def activity_counts(book: Book, low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
    """Sessions per customer (at activity scale 1) on the days in [low, high), bounds in days
    relative to as-of (whole days; per-customer bounds allowed)."""
    grid = book.activity
    lo = np.clip(np.floor(np.broadcast_to(low, (book.n,))) + SESSION_DAYS, 0, SESSION_DAYS).astype(np.int64)
    hi = np.clip(np.floor(np.broadcast_to(high, (book.n,))) + SESSION_DAYS, 0, SESSION_DAYS).astype(np.int64)
    out = np.zeros(book.n)
    for rows in chunks(book.n, SESSION_CHUNK):
        total = np.zeros((rows.stop - rows.start, SESSION_DAYS + 1))
        total[:, 1:] = np.cumsum(grid[rows], axis=1)
        index = np.arange(rows.stop - rows.start)
        out[rows] = total[index, hi[rows]] - total[index, lo[rows]]
    return out / max(book.activity_scale, 1.0)


def last_active(book: Book, t: float | np.ndarray) -> np.ndarray:
    """Midday of the last day before `t` (one instant, or one per customer) with activity (at
    scale 1), NaN when none."""
    stop = np.clip(np.floor(np.broadcast_to(t, (book.n,))) + SESSION_DAYS, 0, SESSION_DAYS).astype(np.int64)
    seen = (book.activity > 0) & (np.arange(book.activity.shape[1]) < stop[:, None])
    # The last seen day: the first True from the right.
    back = np.argmax(seen[:, ::-1], axis=1)
    day = book.activity.shape[1] - 1 - back - SESSION_DAYS + 0.5
    return np.where(seen.any(axis=1), day, np.nan)


def _feature_usage(book: Book, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Usage counters over each customer's last 30 days (before churn for churners)."""
    n = book.n
    end = book.end_t
    recent = activity_counts(book, end - 30, end)
    # Accounts gone before the session year: estimate from their plan's usual activity.
    old = end < -SESSION_DAYS + 30
    recent = np.where(old, rng.poisson(PLAN_SESSIONS_PER_YEAR[book.plan0] / 12 * 0.3), recent)
    affinity = rng.normal(0, 1, n)
    plan = book.plan0
    base = {
        "dashboards": 2.0,
        "reports": 1.5,
        "exports": 0.3,
        "api_calls": -1.0,
        "integrations": -0.3,
        "alerts_configured": 0.0,
        "workflows": -0.8,
    }
    engagement = np.log1p(recent) - np.log(9.0)
    usage: dict[str, np.ndarray] = {}
    for name, bias in base.items():
        logit = bias + 0.45 * plan + 1.1 * engagement + 0.8 * affinity + rng.normal(0, 0.7, n)
        adopted = rng.random(n) < 1 / (1 + np.exp(-logit))
        if name == "api_calls":
            value = np.round(rng.lognormal(np.log(300.0 * (1 + plan) ** 2), 1.0, n) * np.minimum(1, recent / 8))
        elif name in ("integrations", "alerts_configured", "workflows"):
            value = 1 + rng.poisson(1.0 + plan * 0.6, n)
        else:
            share = {"dashboards": 0.35, "reports": 0.5, "exports": 0.15}[name]
            value = rng.poisson(recent * share) + (recent > 0)
        usage[name] = np.where(adopted, value, 0).astype(np.int64)
    seats = PLAN_SEATS[plan] * rng.lognormal(0, 0.4, n)
    usage["seats_active"] = np.maximum(
        (recent > 0).astype(np.int64), np.round(seats * np.minimum(1.0, (recent + 1) / 10.0))
    ).astype(np.int64)
    # The React app's customer card reads `login`, `features` and `api_calls` (the contract's
    # example customer): logins in the window, and the share (%) of product features in use.
    # Derived from the draws above, so the random streams and everything else stay as they were.
    usage["login"] = np.round(recent).astype(np.int64)
    adopted_share = sum((usage[name] > 0).astype(np.int64) for name in base) / len(base)
    usage["features"] = np.round(100 * adopted_share).astype(np.int64)
    return usage


def chunks(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(total, start + size))
