"""What a policy row stores and reads back: numbers, pins and the enabled flag survive
save -> load -> export exactly, on SQLite and on Postgres (whose jsonb rewrites numbers)."""

import json

import pytest

from policies import services
from policies.document import export_document, parse_document
from policies.models import Policy
from policies.selectors import compiled_policy_for, principal_for_agent
from policies.specs import policy_spec, spec_from_data, spec_to_data
from tests.factories import AgentFactory
from tests.policies.factories import approved_server

# Large and fractional bounds, a 64-bit-plus integer and pinned floats: the values a JSON
# round trip through YAML 1.1 (which reads `1e+16` as a string) or through Postgres jsonb
# (which writes a float 1e16 back as the integer 10000000000000000) would change.
NUMBERS = """\
consumer: meter-bot
allow:
  tools: ["meter.charge"]
arguments:
  meter.charge:
    amount:
      minimum: -1.0e-07
      maximum: 1.0e+16
    count:
      minimum: -9007199254740993
      maximum: 100000000000000000000
overrides:
  - name: meter.charge_fixed
    tool: meter.charge
    pin:
      amount: 1.0e+16
      ratio: 0.1
"""


@pytest.fixture
def meter(org_a):
    approved_server(
        org_a,
        "meter",
        {
            "charge": {
                "amount": {"type": "number"},
                "count": {"type": "integer"},
                "ratio": {"type": "number"},
            }
        },
    )
    return AgentFactory(organization=org_a, slug="meter-bot")


def test_the_numbers_document_is_canonical() -> None:
    spec = parse_document(NUMBERS).policies[0]
    assert export_document(parse_document(NUMBERS)) == NUMBERS
    amount = spec.arguments[0].rules[0]
    assert (amount.minimum, amount.maximum) == (-1e-07, 1e16)
    assert type(amount.maximum) is float
    assert spec.overrides[0].pin == {"amount": 1e16, "ratio": 0.1}


def test_a_stored_mapping_reads_back_numbers_as_numbers() -> None:
    # The old reader went mapping -> JSON text -> YAML: `1e+16` came back as a string.
    spec = parse_document(NUMBERS).policies[0]
    stored = json.loads(json.dumps(spec_to_data(spec)))
    assert stored["arguments"]["meter.charge"]["amount"]["maximum"] == 1e16
    back = spec_from_data(stored)
    assert back == spec
    assert type(back.overrides[0].pin["amount"]) is float


def test_numbers_survive_save_load_and_export_exactly(meter, alice):
    services.policy_save(org=meter.organization, actor=alice, text=NUMBERS)
    row = Policy.objects.get(organization=meter.organization, name="meter-bot")
    spec = policy_spec(row)
    assert spec == parse_document(NUMBERS).policies[0]
    pinned = spec.overrides[0].pin["amount"]
    assert pinned == 1e16 and type(pinned) is float
    exported = services.policy_export(org=meter.organization)
    assert exported == NUMBERS
    again = services.policy_apply(org=meter.organization, actor=alice, text=exported, dry_run=True)
    assert again.errors == [] and again.diff == []


def test_the_gateway_forwards_pinned_numbers_and_checks_ranges_as_written(meter, alice):
    services.policy_save(org=meter.organization, actor=alice, text=NUMBERS)
    compiled = compiled_policy_for(meter.organization)
    principal = principal_for_agent(meter)
    fixed = compiled.decide(principal, "meter.charge_fixed", {"count": 3})
    assert fixed.allowed
    assert fixed.effective_arguments == {"count": 3, "amount": 1e16, "ratio": 0.1}
    assert type(fixed.effective_arguments["amount"]) is float
    assert compiled.decide(principal, "meter.charge", {"amount": 1e16}).allowed
    assert not compiled.decide(principal, "meter.charge", {"amount": 1.0000000000000002e16}).allowed
    assert not compiled.decide(principal, "meter.charge", {"amount": -1e-06}).allowed
    assert compiled.decide(principal, "meter.charge", {"count": 10**20}).allowed
    assert not compiled.decide(principal, "meter.charge", {"count": 10**20 + 1}).allowed
