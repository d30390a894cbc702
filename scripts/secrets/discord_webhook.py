"""detect-secrets plugin: Discord webhook URLs (the token is the last path segment)."""

import re

from detect_secrets.plugins.base import RegexBasedDetector


class DiscordWebhookDetector(RegexBasedDetector):
    """Scans for Discord webhook URLs."""

    secret_type = "Discord Webhook URL"

    denylist = [
        re.compile(
            r"(?:discord(?:app)?\.com|canary\.discord\.com|ptb\.discord\.com)/api(?:/v\d+)?/webhooks/\d{17,20}/[A-Za-z0-9_-]{60,80}"
        ),
    ]
