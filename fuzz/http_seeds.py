#!/usr/bin/env python3
"""Writes fuzz/seeds/http_request/: raw HTTP/1.1 requests for
fuzz_http_request, built from the other targets' seeds (which come from the
tests) plus the admin API calls the tests make. @KEY@ and @CERT@ are the
harness's placeholders (admin key, device certificate header).
Usage: python3 fuzz/http_seeds.py   (from the repository root)"""
import base64
import json
import os

SEEDS = "fuzz/seeds"
OUT = os.path.join(SEEDS, "http_request")
UDID = "00008110-000A1B2C3D4E801E"
TOPIC = "com.apple.mgmt.External.2f4e6b2a-91c3-4d1e-8f6a-0b7c5d3e9a21"


def declarations():
    """(name, JSON bytes) of each declaration in the declaration seeds (some
    hold an array, which the admin API takes one at a time)."""
    for name in sorted(os.listdir(os.path.join(SEEDS, "declaration"))):
        stem = name.rsplit(".", 1)[0]
        d = json.loads(read("declaration", name))
        if isinstance(d, list):
            for i, one in enumerate(d):
                yield f"{stem}-{i}", json.dumps(one).encode()
        else:
            yield stem, json.dumps(d).encode()


def read(*parts):
    with open(os.path.join(SEEDS, *parts), "rb") as f:
        return f.read()


def req(method, path, body=b"", headers=()):
    head = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    head += list(headers)
    if body or method in ("PUT", "POST"):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def device(path, body, extra=()):
    return req("PUT", path, body, ["X-Client-Cert: @CERT@", *extra])


def admin(method, path, body=b""):
    hdr = ["Authorization: Bearer @KEY@"]
    if body:
        hdr.append("Content-Type: application/json")
    return req(method, path, body.encode() if isinstance(body, str) else body, hdr)


def plist(entries):
    def val(v):
        if isinstance(v, bool):
            return "<true/>" if v else "<false/>"
        if isinstance(v, bytes):
            return "<data>" + base64.b64encode(v).decode() + "</data>"
        return "<string>" + v + "</string>"
    body = "".join(f"<key>{k}</key>{val(v)}" for k, v in entries.items())
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict>' + body + "</dict></plist>").encode()


def ddm_checkin(endpoint, data=None):
    e = {"MessageType": "DeclarativeManagement", "UDID": UDID, "Endpoint": endpoint}
    if data is not None:
        e["Data"] = data
    return plist(e)


seeds = {}
auth = read("mdm_message", "checkin_authenticate.plist")
token = read("mdm_message", "checkin_token_update.plist")
idle = read("mdm_message", "connect_idle.plist")
ack = read("mdm_message", "connect_acknowledged_query.plist")
# One device's life on one keep-alive connection: enroll, poll, answer.
seeds["device-lifecycle"] = (device("/mdm/checkin", auth) + device("/mdm/checkin", token) +
                             device("/mdm/connect", idle) + device("/mdm/connect", ack))
seeds["checkin-authenticate"] = device("/mdm/checkin", auth)
seeds["checkin-token-update"] = device("/mdm/checkin", token)
seeds["checkin-checkout"] = device("/mdm/checkin", plist({"MessageType": "CheckOut", "UDID": UDID, "Topic": TOPIC}))
seeds["single-url"] = device("/mdm", auth, ["Content-Type: application/x-apple-aspen-mdm-checkin"]) + \
    device("/mdm", idle)
seeds["connect-idle"] = device("/mdm/connect", idle)
seeds["connect-ack"] = device("/mdm/connect", ack)
seeds["gettoken"] = device("/mdm/checkin", plist({"MessageType": "GetToken", "UDID": UDID,
                                                  "TokenServiceType": "com.apple.watch.pairing",
                                                  "TokenParameters": b"<plist/>"}))
seeds["ddm-tokens"] = device("/mdm/checkin", ddm_checkin("tokens"))
seeds["ddm-declaration-items"] = device("/mdm/checkin", ddm_checkin("declaration-items"))
seeds["ddm-fetch"] = device("/mdm/checkin", ddm_checkin("declaration/configuration/cfg-1"))
for name in sorted(os.listdir(os.path.join(SEEDS, "ddm_status"))):
    seeds["ddm-status-" + name.rsplit(".", 1)[0]] = device(
        "/mdm/checkin", ddm_checkin("status", read("ddm_status", name)))
seeds["mdm-signature-bad"] = req("PUT", "/mdm/checkin", auth, ["Mdm-Signature: MIAGCSqGSIb3DQEHAqCAMIACAQE="])
seeds["asset"] = req("GET", "/mdm/assets/fuzz-asset", b"", ["X-Client-Cert: @CERT@"])

seeds["enroll-secret"] = req("GET", "/enroll?secret=fuzz-enroll-secret-0123456789")
seeds["enroll-basic"] = req("GET", "/enroll", b"", ["Authorization: Basic " +
                                                    base64.b64encode(b"x:fuzz-enroll-secret-0123456789").decode()])
# The other targets' seeds start with a mode byte; even modes hold the body
# as a client sends it.
for name in sorted(os.listdir(os.path.join(SEEDS, "machineinfo"))):
    raw = read("machineinfo", name)
    if raw[0] & 1:
        continue
    stem = name.rsplit(".", 1)[0]
    for path in ("/enroll", "/enroll/watch"):
        seeds["post" + path.replace("/", "-") + "-" + stem] = req(
            "POST", path, raw[1:], ["Content-Type: application/pkcs7-signature"])
seeds["scep-getcacert"] = req("GET", "/scep?operation=GetCACert")
seeds["scep-getcacaps"] = req("GET", "/scep?operation=GetCACaps")
for name in sorted(os.listdir(os.path.join(SEEDS, "scep"))):
    raw = read("scep", name)
    if not raw[0] & 1:
        body = raw[1:]
        seeds["scep-post-" + name.rsplit(".", 1)[0]] = req("POST", "/scep?operation=PKIOperation", body,
                                                           ["Content-Type: application/x-pki-message"])
        seeds["scep-get-" + name.rsplit(".", 1)[0]] = req(
            "GET", "/scep?operation=PKIOperation&message=" +
            base64.b64encode(body).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"))

# Admin API: the declarations the DDM tests use, sets, assignments, groups,
# asset data, enqueue, watch enablement, enrollment administration.
for stem, d in declarations():
    seeds["admin-declaration-" + stem] = admin("PUT", "/v1/declarations", d)
seeds["admin-ddm-setup"] = (
    admin("PUT", "/v1/declarations/cfg-pass",
          '{"Type":"com.apple.configuration.passcode.settings","Payload":{"MinimumLength":6}}') +
    admin("PUT", "/v1/sets/base", '{"declarations":["cfg-pass"]}') +
    admin("POST", "/v1/sets/base/assignments", '{"device":"' + UDID + '"}') +
    admin("PUT", "/v1/groups/lab/members/" + UDID) +
    admin("POST", "/v1/sets/base/assignments", '{"group":"lab"}') +
    admin("POST", "/v1/sets/base/assignments", '{"all":true}') +
    admin("DELETE", "/v1/sets/base/assignments", '{"device":"' + UDID + '"}') +
    admin("GET", "/v1/sets/base") + admin("GET", "/v1/declarations?kind=configuration") +
    admin("POST", "/v1/ddm/sync"))
seeds["admin-asset-data"] = admin("PUT", "/v1/asset-data/fuzz-asset", "hello asset") + \
    admin("GET", "/v1/asset-data/fuzz-asset") + admin("DELETE", "/v1/asset-data/fuzz-asset")
cmd = read("mdm_message", "command_device_information.plist")
seeds["admin-enqueue"] = req("POST", "/v1/enqueue/" + UDID + "?nopush=1", cmd,
                             ["Authorization: Bearer @KEY@", "Content-Type: application/x-apple-plist"])
seeds["admin-devices"] = (admin("GET", "/v1/devices") + admin("GET", "/v1/devices/" + UDID) +
                          admin("GET", "/v1/devices/" + UDID + "/status-items") +
                          admin("GET", "/v1/devices/" + UDID + "/declarations") +
                          admin("GET", "/v1/devices/" + UDID + "/commands") +
                          admin("GET", "/v1/commands?status=pending") +
                          admin("GET", "/v1/push-status") + admin("POST", "/v1/push/" + UDID))
seeds["admin-watch"] = (admin("PUT", "/v1/devices/" + UDID + "/watch-enrollment") +
                        admin("GET", "/v1/devices/" + UDID + "/watch-enrollment") +
                        admin("PUT", "/v1/groups/lab/watch-enrollment") +
                        admin("GET", "/v1/devices/" + UDID + "/watches") +
                        admin("DELETE", "/v1/devices/" + UDID + "/watch-enrollment"))
seeds["admin-enrollment"] = (admin("POST", "/v1/challenges?udid=" + UDID) + admin("POST", "/v1/challenges") +
                             admin("PUT", "/v1/admission/SERIAL-ADM-1") + admin("GET", "/v1/admission/SERIAL-ADM-1") +
                             admin("DELETE", "/v1/admission/SERIAL-ADM-1") + admin("GET", "/v1/certificates") +
                             admin("POST", "/v1/certificates/0b0b01/revoke") +
                             admin("POST", "/v1/renewals?days=30&dry_run=1"))
seeds["admin-basic-auth"] = req("GET", "/v1/devices", b"", ["Authorization: Basic " +
                                                            base64.b64encode(b"admin:fuzz-admin-key-0123456789abcdef").decode()])
seeds["admin-no-key"] = req("GET", "/v1/devices")
seeds["expect-continue"] = req("PUT", "/mdm/checkin", auth, ["X-Client-Cert: @CERT@", "Expect: 100-continue"])
seeds["chunked"] = (b"PUT /mdm/connect HTTP/1.1\r\nHost: x\r\nX-Client-Cert: @CERT@\r\nTransfer-Encoding: chunked\r\n\r\n" +
                    b"%x\r\n" % len(idle) + idle + b"\r\n0\r\n\r\n")
seeds["events"] = admin("GET", "/v1/devices/" + UDID + "/events")
seeds["http10-head"] = b"HEAD /enroll HTTP/1.0\r\n\r\n"

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds in {OUT}")

# fuzz_admin_json: byte 0 picks the call (see fuzz/fuzz_admin_json.c).
ADMIN_OUT = os.path.join(SEEDS, "admin_json")
admin_seeds = {}
for stem, d in declarations():
    admin_seeds["decl-" + stem] = b"\x00" + d
admin_seeds["decl-path-minimal"] = b'\x01{"Type":"com.apple.configuration.passcode.settings","Payload":{"MinimumLength":6}}'
admin_seeds["set"] = b'\x02{"declarations":["fz-decl","mgmt-org","cfg-passcode"]}'
admin_seeds["set-empty"] = b'\x02{"declarations":[]}'
admin_seeds["assign-device"] = b'\x03{"device":"FUZZ-UDID-0001"}'
admin_seeds["assign-group"] = b'\x03{"group":"lab"}'
admin_seeds["assign-all"] = b'\x03{"all":true}'
admin_seeds["unassign-device"] = b'\x04{"device":"FUZZ-UDID-0001"}'
admin_seeds["unassign-group"] = b'\x04{"group":"lab"}'
admin_seeds["enqueue"] = b"\x05" + read("mdm_message", "command_device_information.plist")
os.makedirs(ADMIN_OUT, exist_ok=True)
for name, data in admin_seeds.items():
    with open(os.path.join(ADMIN_OUT, name), "wb") as f:
        f.write(data)
print(f"{len(admin_seeds)} seeds in {ADMIN_OUT}")
