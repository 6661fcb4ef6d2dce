"""The call engine: the mechanics of calls, as a back-to-back user agent with anchored
media. The router above decides where a call goes; this package sets it up and carries
it, one concern per module, and never imports the router.

- model: Call (with its state) and Leg, and what a call is made of;
- registry: the calls and dialogs in progress, answering, and the one way a call ends;
- outcome: how a call ended, as its record and call.ended say (answered by a person,
  or where it ended unanswered);
- negotiate: SDP offer/answer for a leg, and the bridge it calls for (media/bridge.py);
- local: legs ipbx answers itself (call flows, the echo test);
- fork: ringing contacts in parallel and taking the first answer;
- ring_media: the media endpoints the phones rung ring on (a browser's its own);
- trunk: dialing out through a route's trunks with failover and digest retry;
- indialog: re-INVITE, UPDATE, INFO, BYE and ACK inside a dialog;
- hold, transfer, pickup, originate, recording: one feature each;
- engine: the Calls object that puts them together for the PBX core.
"""
