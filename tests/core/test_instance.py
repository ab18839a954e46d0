import json
import math

import pytest

from edgediff.core.generator import random_instance
from edgediff.core.instance import Instance, InstanceError, load_instance, save_instance


def minimal():
    return {
        "users": [
            {"id": "a", "k": 0.1, "h": 0.01, "alpha": 20.0, "request_time": 0.3},
            {"id": "b", "k": 0.2, "h": -0.05, "alpha": 5.0, "request_time": 0.9},
        ]
    }


def test_defaults_follow_the_paper():
    inst = Instance.from_dict(minimal())
    assert (inst.N, inst.N_hat, inst.B_max, inst.G, inst.K) == (200, 80, 20, 8, 1.0)
    assert inst.eta == 10.0 and inst.W_max == 1e6
    assert (inst.pai.a, inst.pai.b) == (0.0413, 71.44)
    assert list(inst.intermediate_bits) == [4.4e6, 4.4e6] and list(inst.prompt_bits) == [216, 216]
    assert inst.edge_k == pytest.approx(0.0364604) and inst.edge_h == pytest.approx(0.0137667)


def test_round_trip_through_a_file(tmp_path):
    inst = random_instance(7, 3, seed=5, B_max=4)
    save_instance(inst, tmp_path / "i.json")
    back = load_instance(tmp_path / "i.json")
    assert back.to_dict() == inst.to_dict()


def mutate(path, value):
    data = minimal()
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target.setdefault(key, {})
    last = keys[-1]
    if value is DELETE:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    "path, value, field",
    [
        ("users.0.alpha", -1.0, "users.0.alpha"),
        ("users.0.alpha", math.nan, "users.0.alpha"),
        ("users.1.k", math.inf, "users.1.k"),
        ("users.0.request_time", -0.1, "users.0.request_time"),
        ("users.0.request_time", 1.5, "users.0.request_time"),
        ("users.0.prompt_bits", -5, "users.0.prompt_bits"),
        ("users.0.h", -0.2, "users.0"),
        ("users.0.alpha", DELETE, "users.0.alpha"),
        ("users.1.id", "a", "users.1.id"),
        ("users.0.colour", "red", "users.0.colour"),
        ("users", [], "users"),
        ("users", DELETE, "users"),
        ("N_hat", 201, "N_hat"),
        ("N", 0, "N"),
        ("G", 0, "G"),
        ("G", 2.5, "G"),
        ("B_max", -1, "B_max"),
        ("K", 0.0, "K"),
        ("edge.k", -0.1, "edge.k"),
        ("link.eta", 0, "link.eta"),
        ("pai.a", -0.04, "pai.a"),
        ("extra", 1, "extra"),
    ],
)
def test_invalid_instances_name_the_field(path, value, field):
    with pytest.raises(InstanceError) as err:
        Instance.from_dict(mutate(path, value))
    message = str(err.value)
    assert message.startswith(field + ":"), message
    assert "\n" not in message


def test_not_an_object_and_not_json(tmp_path):
    with pytest.raises(InstanceError, match="instance"):
        Instance.from_dict([1, 2])
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(InstanceError, match="not valid JSON"):
        load_instance(bad)


def test_instance_arrays_are_read_only():
    inst = Instance.from_dict(minimal())
    with pytest.raises(ValueError):
        inst.alpha[0] = 3.0


def test_json_nan_literal_is_rejected(tmp_path):
    text = json.dumps(minimal()).replace("20.0", "NaN")
    path = tmp_path / "nan.json"
    path.write_text(text)
    with pytest.raises(InstanceError, match="users.0.alpha"):
        load_instance(path)
