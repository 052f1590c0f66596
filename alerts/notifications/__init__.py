"""Notification delivery: routing, noise control and the email / Slack / Teams channels.

`fanout.py` decides who gets what and writes `notification_deliveries`; `dispatch.py` sends due
deliveries; `channels.py` speaks each channel's protocol; `webhooks.py` is the SSRF-guarded
HTTP client; `timing.py` holds the pure clock rules (quiet hours, digest time).
"""
