"""Demo step: the daily-triage policy. The agent may read and update tickets and post to one
channel (through `chat.post_to_triage`, a variant of `chat.post_message` with the channel
pinned), and is denied the delete tools. Applied through the same path as a YAML file
(`policy_apply`), so re-running changes nothing. Needs the catalog step (approved servers)."""

from demo.seed.context import DemoContext
from policies.models import RevisionSource
from policies.services import policy_apply

# The demo chat's triage channel is `daily-triage` (see demo/servers/chat.py). Written in the
# canonical form `policy_export` prints, so exporting the demo org gives this text back.
DEMO_POLICY_YAML = """\
toolGroups:
  daily-triage:
    - "tickets.list_tickets"
    - "tickets.get_ticket"
    - "tickets.update_ticket"
    - "chat.post_to_triage"
policies:
  - name: daily-triage
    description: "Read today's tickets, post one summary to #daily-triage, update the tickets. Never delete."
    consumer: daily-triage-agent
    allow:
      toolGroups: ["daily-triage"]
    deny:
      tools: ["tickets.delete_ticket", "chat.delete_channel"]
    arguments:
      tickets.update_ticket:
        comment:
          maxLength: 2000
    overrides:
      - name: chat.post_to_triage
        tool: chat.post_message
        title: "Post to #daily-triage"
        description: "Post a message to the #daily-triage channel (the channel is fixed)."
        pin:
          channel: "daily-triage"
    limits:
      rateLimitPerMinute: 120
      perTool:
        chat.post_to_triage:
          rateLimitPerMinute: 5
"""


def seed(ctx: DemoContext) -> None:
    result = policy_apply(
        org=ctx.org,
        actor=ctx.admin,
        text=DEMO_POLICY_YAML,
        dry_run=False,
        source=RevisionSource.DEMO,
    )
    if result.errors:
        problems = "; ".join(str(e) for e in result.errors)
        raise RuntimeError(f"The demo policy does not apply: {problems}")
    ctx.summary["policies"] = {
        "policy": "daily-triage",
        "editor": f"/o/{ctx.org.slug}/policies/",
        "explain": f"/o/{ctx.org.slug}/policies/explain/",
        "export": f"python manage.py policy_export --org {ctx.org.slug}",
    }
