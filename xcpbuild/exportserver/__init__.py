"""The reference export server: XAPI-shaped /export_raw_vdi with correct backpressure.

Depends only on errors, log and the VHD codec, so it can ship alone as an RPM.
"""
