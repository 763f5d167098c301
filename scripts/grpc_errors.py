#!/usr/bin/env python3
"""Calls a running Ledger cluster from Python (grpcio), as a service in another language would,
and checks that its errors are readable with the standard tools alone: the gRPC code, the
google.rpc.Status details (grpcio-status), the ErrorInfo reason, its "applied" flag, and the
leader hint of a follower's refusal. No generated stubs: requests are hand-encoded protobuf.

Usage: grpc_errors.py LEDGERCTL DIR   (DIR holds a cluster from `ledgerctl local up`)
docs/client.md, "Calling from another language", describes what is checked here.
"""

import json
import struct
import subprocess
import sys

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

LEDGERCTL, DIR = sys.argv[1], sys.argv[2]


def error_info(error):
    """The google.rpc.ErrorInfo of a failed call, read with grpcio-status."""
    status = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status details: {error.code()} {error.details()}"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError(f"no ErrorInfo in {status}")


def call(address, method, body, timeout=10):
    """Sends raw protobuf bytes to a Ledger method; returns the grpc.RpcError, or None."""
    with grpc.insecure_channel(address) as channel:
        stub = channel.unary_unary(
            f"/ledger.v1.Ledger/{method}",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        try:
            stub(body, timeout=timeout)
            return None
        except grpc.RpcError as error:
            return error


def account(account_id):
    """A CreateAccountsRequest with one account (id, ledger 1, code 1), hand-encoded."""
    u128 = b"\x09" + struct.pack("<Q", account_id)
    acct = b"\x0a" + bytes([len(u128)]) + u128 + b"\x48\x01\x50\x01"
    return b"\x0a" + bytes([len(acct)]) + acct


def ledgerctl(*args):
    out = subprocess.run(
        [LEDGERCTL, *args, "--json"], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


layout = json.load(open(f"{DIR}/cluster.json"))
addresses = {n["id"]: n["addrs"]["grpc"] for n in layout["nodes"]}

# 1. A follower refuses with FAILED_PRECONDITION, reason LEDGER_NOT_LEADER, applied "no", and
#    names the leader in the ErrorInfo metadata.
leader = None
for node, address in addresses.items():
    error = call(address, "CreateAccounts", account(1_000 + node))
    if error is None:
        leader = node
        continue
    if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
        continue
    info = error_info(error)
    assert info.reason == "LEDGER_NOT_LEADER", info
    assert info.domain == "ledger.v1", info
    assert info.metadata["applied"] == "no", info
    hinted = info.metadata["leader_address"]
    assert hinted in addresses.values(), (hinted, addresses)
    print(f"ok: node {node} refused: LEDGER_NOT_LEADER, applied=no, leader at {hinted}")
assert leader is not None, "no node accepted the write"
leader_address = addresses[leader]

# 2. Malformed protobuf is INVALID_ARGUMENT (not INTERNAL), applied "no".
error = call(leader_address, "CreateTransfers", b"\xff\xff\xff\xff")
assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
info = error_info(error)
assert info.reason == "LEDGER_INVALID_ARGUMENT" and info.metadata["applied"] == "no", info
print("ok: malformed protobuf: INVALID_ARGUMENT, LEDGER_INVALID_ARGUMENT, applied=no")

# 3. With both followers killed, a write to the leader either times out after it was proposed
#    (LEDGER_OUTCOME_UNKNOWN, applied "unknown") or is refused (LEDGER_UNAVAILABLE, applied
#    "no"): the flag follows the reason, whichever happens.
for node in addresses:
    if node != leader:
        ledgerctl("local", "stop", "--dir", DIR, "--node", str(node), "--kill")
seen = set()
for attempt in range(2):
    error = call(leader_address, "CreateAccounts", account(2_000 + attempt), timeout=20)
    assert error is not None, "a write without a quorum succeeded"
    info = error_info(error)
    expected = {"LEDGER_OUTCOME_UNKNOWN": "unknown", "LEDGER_UNAVAILABLE": "no"}
    assert info.reason in expected, info
    assert info.metadata["applied"] == expected[info.reason], info
    seen.add(info.reason)
    print(f"ok: without a quorum: {error.code().name}, {info.reason}, "
          f"applied={info.metadata['applied']}")
print(f"ok: every error carried a readable google.rpc.Status ({sorted(seen)})")
