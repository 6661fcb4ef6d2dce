"""ipbx: a SIP server and IP-PBX."""
