"""Media engine: RTP/RTCP, codecs, DTMF, WAV I/O and endpoints. Knows nothing of SIP."""
