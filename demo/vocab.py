"""Fixed word lists and catalogues the demo generator draws from.

Kept as plain data so the generated book reads like a real one without a Faker dependency,
and so the same seed always yields the same names.
"""


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "Aaliyah Aaron Abigail Adam Adrian Aisha Alan Alejandro Alex Alice Alicia Amara Amelia Amir Ana Andre "
    "Andrea Andrew Angela Anika Anna Anthony Arjun Ava Beatriz Ben Benjamin Bianca Blake Brandon Brian Bruno "
    "Caleb Camila Carlos Carmen Caroline Catherine Charles Charlotte Chen Chloe Chris Claire Daniel Daniela "
    "David Deepa Diana Diego Dmitri Elena Eli Elijah Elizabeth Ella Emily Emma Eric Ethan Eva Farah Felix "
    "Fatima Gabriel Grace Hana Hannah Harper Hassan Henry Ian Ingrid Isaac Isabel Ivan Jack Jacob James Jamal "
    "Jane Jasmine Jason Javier Jennifer Jessica Joao John Jonas Jordan Jose Joseph Julia Julian Kai Karen "
    "Kate Kenji Kevin Kim Laura Layla Leah Leo Liam Lily Linh Lucas Lucia Luis Maria Mark Marta Mateo Maya "
    "Mei Mia Michael Miguel Mohammed Naomi Nathan Nina Noah Nora Olivia Omar Oscar Priya Rafael Rahul Rebecca "
    "Ricardo Rosa Ryan Samuel Sara Sebastian Sofia Sophie Stefan Tariq Thomas Tom Valentina Victor Wei Yara "
    "Yusuf Zara Zoe"
)

LAST_NAMES = _words(
    "Abbott Adams Ahmed Alvarez Andersen Bailey Baker Banerjee Barnes Becker Bell Bennett Berg Brooks Brown "
    "Bui Campbell Carter Castro Chan Chavez Chen Clark Collins Cooper Costa Cruz Das Davies Diaz Dubois Edwards "
    "Evans Fischer Fernandez Fisher Flores Foster Garcia Gomez Gonzalez Gray Green Gupta Hall Hansen Harris "
    "Hayes Hernandez Hill Hoffmann Huang Hughes Ito Jackson Jansen Johnson Jones Kaur Kelly Khan Kim King "
    "Kowalski Kumar Larsen Lee Lewis Li Lin Lopez Martin Martinez Mehta Meyer Miller Mitchell Moore Morales "
    "Morgan Murphy Nakamura Nelson Nguyen Novak Okafor Oliveira Olsen Ortiz Park Patel Perez Perry Peters "
    "Petrov Phillips Price Ramirez Reddy Reed Reyes Richter Rivera Roberts Robinson Rodriguez Rossi Russo "
    "Sanchez Santos Schmidt Schneider Scott Shah Silva Singh Smith Sousa Stewart Sullivan Suzuki Tanaka Taylor "
    "Thomas Thompson Torres Tran Turner Vargas Walker Wang Ward Watson Weber White Williams Wilson Wong Wright "
    "Wu Yamamoto Yang Young Zhang Zimmermann"
)

COMPANY_HEADS = _words(
    "Acme Apex Arbor Ascend Aspen Atlas Aurora Beacon Birch Blue Bold Bright Cascade Cedar Clear Cloud Cobalt "
    "Copper Coral Crest Crystal Delta Drift Echo Ember Evergreen Falcon Fern Flint Forge Fox Frontier Garnet "
    "Golden Granite Green Grid Harbor Hawk Helix Horizon Indigo Iron Ivy Jade Juniper Keystone Kinetic Lake "
    "Lantern Laurel Level Lighthouse Lime Linear Lunar Maple Marble Meadow Mercury Meridian Mesa Metro Mint "
    "Monarch Nimbus North Nova Oak Ocean Onyx Orbit Orchid Pacific Peak Pine Pioneer Pixel Polar Prairie Prime "
    "Prism Pulse Quartz Quill Radiant Rapid Red Ridge River Rock Sage Sapphire Scarlet Sierra Signal Silver "
    "Sky Slate Solar Spark Spruce Stellar Stone Summit Sun Swift Terra Thunder Tidal Timber True Union Vector "
    "Velvet Vertex Violet Vista Willow Wind Zenith"
)

COMPANY_TAILS = _words(
    "bay base beam bird bit block bloom bolt bridge brook byte cast core craft crest dale dock field flow "
    "forge form gate glen grove hub hive jet keep lab lane leaf light line link loop mark mill mint mode "
    "nest path peak point port quest rail reach ridge rise rock root scale scope shift shore side smith "
    "source span spark spot spring stack star stone stream tide track trail tree vale view wave way well "
    "wing wise works yard"
)

COMPANY_FORMS = (
    "Analytics",
    "Labs",
    "Systems",
    "Software",
    "Logistics",
    "Health",
    "Media",
    "Capital",
    "Robotics",
    "Energy",
    "Retail",
    "Studios",
    "Networks",
    "Foods",
    "Partners",
)
DOMAIN_TLDS = (".com", ".com", ".com", ".io", ".co", ".ai")

PLANS = ("Starter", "Basic", "Pro", "Enterprise")
PLAN_SHARE = (0.34, 0.30, 0.26, 0.10)
PLAN_MRR_MEDIAN = (59.0, 199.0, 649.0, 3200.0)
PLAN_MRR_SIGMA = (0.25, 0.30, 0.35, 0.50)

# Product actions recorded in `user_sessions.actions`.
ACTIONS = (
    "view_dashboard",
    "open_report",
    "export_report",
    "edit_dashboard",
    "run_query",
    "create_alert",
    "share_report",
    "invite_user",
    "update_settings",
    "view_account",
    "connect_integration",
    "create_workflow",
    "api_key_rotate",
    "download_csv",
    "comment",
)

FEATURES = ("dashboards", "reports", "exports", "api_calls", "integrations", "alerts_configured", "workflows")

TICKET_SUBJECTS_ROUTINE = (
    "How do I add a teammate?",
    "Question about dashboard filters",
    "Where can I change the report schedule?",
    "CSV export column order",
    "Request: dark mode",
    "How to connect our CRM",
    "Invoice copy needed for accounting",
    "Update billing contact",
    "SSO setup question",
    "Custom field not showing in report",
    "Timezone of scheduled reports",
    "API pagination question",
)
TICKET_SUBJECTS_ESCALATION = (
    "Dashboards not loading since this morning",
    "Data sync has been failing for days",
    "Reports show wrong numbers",
    "API returning 500 errors",
    "Export times out for large reports",
    "We were charged twice this month",
    "Users locked out after SSO change",
    "Integration lost all mapped fields",
    "Performance is unacceptable for our team",
    "Missing data after the last release",
    "Need to talk about our contract",
    "Webhook deliveries are delayed by hours",
)

NPS_COMMENTS_PROMOTER = (
    "Great product, the team relies on it daily.",
    "Support is fast and helpful.",
    "The dashboards save us hours every week.",
    "Easy to roll out to new teammates.",
    "Exactly what we needed.",
)
NPS_COMMENTS_PASSIVE = (
    "Good overall, reporting could be more flexible.",
    "Works fine, a bit pricey for what we use.",
    "Solid, but onboarding new users takes time.",
    "Does the job.",
)
NPS_COMMENTS_DETRACTOR = (
    "Too many bugs lately.",
    "Support takes days to answer.",
    "We are not getting the value we expected.",
    "Hard to use, the team went back to spreadsheets.",
    "Price went up, usage went down.",
    "Missing the integrations we need.",
)

# Staff are fixed (not drawn from the seed) so a username always maps to the same person.
CSM_NAMES = (
    ("Maya", "Patel"),
    ("Lucas", "Bennett"),
    ("Sofia", "Romero"),
    ("Daniel", "Okafor"),
    ("Hannah", "Schmidt"),
    ("Kenji", "Watanabe"),
    ("Grace", "Sullivan"),
    ("Omar", "Haddad"),
    ("Elena", "Petrova"),
    ("Marcus", "Reid"),
    ("Priya", "Nair"),
    ("Tom", "Lindqvist"),
    ("Aisha", "Bello"),
    ("Jonas", "Weber"),
    ("Camila", "Duarte"),
    ("Ryan", "Gallagher"),
    ("Mei", "Tanaka"),
    ("Victor", "Almeida"),
    ("Nora", "Eriksen"),
    ("Samuel", "Adeyemi"),
    ("Julia", "Novak"),
    ("Arjun", "Mehta"),
    ("Chloe", "Martin"),
    ("Diego", "Castillo"),
    ("Ingrid", "Holm"),
    ("Kwame", "Mensah"),
    ("Laura", "Fischer"),
    ("Ethan", "Brooks"),
    ("Yara", "Khalil"),
    ("Felix", "Wagner"),
    ("Zoe", "Chen"),
    ("Mateo", "Silva"),
    ("Anika", "Jansen"),
    ("Ben", "Carter"),
    ("Leila", "Rahimi"),
    ("Oscar", "Nilsson"),
    ("Rosa", "Moreno"),
    ("Isaac", "Cohen"),
    ("Hana", "Kim"),
    ("Noah", "Fitzgerald"),
)
MANAGER_NAMES = (("Rachel", "Kaplan"), ("David", "Osei"))
VIEWER_NAME = ("Vera", "Lindgren")
ADMIN_NAME = ("Demo", "Admin")

INTERVENTION_TYPES = (
    "Executive Check-in",
    "Payment Recovery",
    "Support Escalation",
    "Product Training",
    "Renewal Reminder",
    "Onboarding Call",
)
INTERVENTION_TEXT = {
    "Executive Check-in": (
        "Executive sponsor call to review goals and value delivered.",
        "Schedule QBR with the sponsor",
    ),
    "Payment Recovery": ("Recent payments failed; confirm card and billing contact.", "Send updated payment link"),
    "Support Escalation": (
        "Open tickets are piling up; escalate to support engineering.",
        "Review ticket backlog with support lead",
    ),
    "Product Training": ("Usage is dropping; run a training on unused features.", "Book a 45-minute training"),
    "Renewal Reminder": ("Renewal is coming up; confirm plan and seats.", "Send renewal proposal"),
    "Onboarding Call": ("New account has not reached first value yet.", "Walk through setup checklist"),
}

# Which playbook (and intervention type) answers which churn cause.
CAUSE_PLAYBOOK = {
    "Low engagement": "Product Training",
    "Declining usage": "Executive Check-in",
    "Low feature adoption": "Product Training",
    "Support issues": "Support Escalation",
    "Low satisfaction": "Executive Check-in",
    "Payment problems": "Payment Recovery",
    "Onboarding incomplete": "Onboarding Call",
}

PLAYBOOKS = {
    "Executive Check-in": {
        "description": "Answers Declining usage and Low satisfaction: the account owner brings in an executive "
        "sponsor to reset goals before the renewal conversation.",
        "steps": [
            {"key": "notify-owner", "type": "notify", "target": "owner", "message": "Executive check-in started"},
            {
                "key": "create-check-in",
                "type": "create_intervention",
                "intervention_type": "Executive Check-in",
                "priority": "high",
                "due_in_days": 5,
            },
            {"key": "email-sponsor", "type": "send_email", "template": "executive_check_in", "to": "sponsor"},
            {"key": "wait-7d", "type": "wait", "days": 7},
            {
                "key": "still-at-risk",
                "type": "condition",
                "if": {"field": "churn_risk", "op": "gte", "value": 0.8},
                "then": "alert-manager",
                "else": "end",
            },
            {"key": "alert-manager", "type": "create_alert", "severity": "high", "title": "Check-in did not help"},
        ],
    },
    "Payment Recovery": {
        "description": "Answers Payment problems: failed payments or a downgrade. Dunning e-mails first, "
        "then a CSM call before the subscription lapses.",
        "steps": [
            {"key": "email-billing", "type": "send_email", "template": "payment_failed", "to": "billing_contact"},
            {"key": "wait-3d", "type": "wait", "days": 3},
            {
                "key": "paid-yet",
                "type": "condition",
                "if": {"field": "payment_failures_7d", "op": "gt", "value": 0},
                "then": "create-recovery",
                "else": "end",
            },
            {
                "key": "create-recovery",
                "type": "create_intervention",
                "intervention_type": "Payment Recovery",
                "priority": "high",
                "due_in_days": 2,
            },
            {"key": "notify-owner", "type": "notify", "target": "owner", "message": "Payment still failing"},
        ],
    },
    "Support Escalation": {
        "description": "Answers Support issues: many or escalating tickets. Pulls in a support lead and keeps "
        "the customer informed until the backlog is clear.",
        "steps": [
            {"key": "notify-support-lead", "type": "notify", "target": "role:manager", "message": "Ticket spike"},
            {
                "key": "create-escalation",
                "type": "create_intervention",
                "intervention_type": "Support Escalation",
                "priority": "high",
                "due_in_days": 1,
            },
            {"key": "email-customer", "type": "send_email", "template": "support_escalation", "to": "primary"},
            {"key": "wait-5d", "type": "wait", "days": 5},
            {
                "key": "backlog-cleared",
                "type": "condition",
                "if": {"field": "support_tickets", "op": "gt", "value": 2},
                "then": "alert-owner",
                "else": "end",
            },
            {"key": "alert-owner", "type": "create_alert", "severity": "medium", "title": "Tickets still open"},
        ],
    },
    "Product Training": {
        "description": "Answers Low engagement and Low feature adoption: a guided training on the features "
        "the account does not use yet, followed by tips by e-mail.",
        "steps": [
            {"key": "email-tips", "type": "send_email", "template": "feature_tips", "to": "all_users"},
            {
                "key": "create-training",
                "type": "create_intervention",
                "intervention_type": "Product Training",
                "priority": "medium",
                "due_in_days": 10,
            },
            {"key": "wait-14d", "type": "wait", "days": 14},
            {
                "key": "usage-recovered",
                "type": "condition",
                "if": {"field": "health_score", "op": "lt", "value": 50},
                "then": "notify-owner",
                "else": "end",
            },
            {"key": "notify-owner", "type": "notify", "target": "owner", "message": "Usage has not recovered"},
        ],
    },
    "Renewal Reminder": {
        "description": "Answers upcoming renewals of accounts with Declining usage: confirm plan and seats "
        "early so the renewal is not a surprise.",
        "steps": [
            {"key": "email-renewal", "type": "send_email", "template": "renewal_upcoming", "to": "primary"},
            {"key": "wait-7d", "type": "wait", "days": 7},
            {
                "key": "create-renewal",
                "type": "create_intervention",
                "intervention_type": "Renewal Reminder",
                "priority": "medium",
                "due_in_days": 14,
            },
        ],
    },
    "Onboarding Call": {
        "description": "Answers Onboarding incomplete: a new account that has not reached first value gets "
        "a setup call and a checklist.",
        "steps": [
            {
                "key": "create-onboarding",
                "type": "create_intervention",
                "intervention_type": "Onboarding Call",
                "priority": "high",
                "due_in_days": 3,
            },
            {"key": "email-checklist", "type": "send_email", "template": "onboarding_checklist", "to": "primary"},
            {"key": "wait-10d", "type": "wait", "days": 10},
            {
                "key": "activated",
                "type": "condition",
                "if": {"field": "feature_breadth", "op": "lt", "value": 3},
                "then": "notify-owner",
                "else": "end",
            },
            {"key": "notify-owner", "type": "notify", "target": "owner", "message": "Still not activated"},
        ],
    },
}
# Intervention type -> playbook name: each type's playbook is the default playbook of that name
# (`playbooks.defaults`, seeded first), so the demo adds no second playbook for the same work.
TYPE_PLAYBOOK = {name: name for name in INTERVENTION_TYPES}
