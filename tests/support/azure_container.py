"""Create a blob container on an Azure Blob endpoint (Azurite) with Shared Key auth.

Usage: azure_container.py ENDPOINT ACCOUNT CONTAINER; the key is read from AZURE_STORAGE_KEY.
The tests use it because dbbackup (like OpenDAL) never creates containers or buckets.
"""
import base64, hashlib, hmac, os, sys, urllib.request
from email.utils import formatdate

endpoint, account, container = sys.argv[1:4]
key = base64.b64decode(os.environ["AZURE_STORAGE_KEY"])
date = formatdate(usegmt=True)
version = "2021-08-06"
to_sign = "\n".join(
    ["PUT", "", "", "", "", "application/octet-stream"] + [""] * 6
    + [f"x-ms-date:{date}", f"x-ms-version:{version}",
       f"/{account}/{account}/{container}", "restype:container"]
)
sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(
    f"{endpoint}/{container}?restype=container", method="PUT", data=b"",
    headers={"x-ms-date": date, "x-ms-version": version,
             "Authorization": f"SharedKey {account}:{sig}",
             "Content-Type": "application/octet-stream"},
)
try:
    print(urllib.request.urlopen(req).status)
except urllib.error.HTTPError as e:
    if e.code != 409:  # exists already
        sys.exit(f"{e.code} {e.read().decode()}")
    print(409)
except urllib.error.URLError as e:
    sys.exit(f"cannot reach {endpoint}: {e.reason}")
