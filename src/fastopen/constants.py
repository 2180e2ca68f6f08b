"""Linux TCP Fast Open constants, including those Python 3.11's socket module lacks."""

from __future__ import annotations

import socket

TCP_FASTOPEN = 23
TCP_FASTOPEN_CONNECT = 30
TCP_FASTOPEN_KEY = 33
TCP_FASTOPEN_NO_COOKIE = 34
TCP_INFO = socket.TCP_INFO
MSG_FASTOPEN = 0x20000000

# tcpi_options bits (byte 5 of struct tcp_info)
TCPI_OPT_TIMESTAMPS = 1
TCPI_OPT_SACK = 2
TCPI_OPT_WSCALE = 4
TCPI_OPT_ECN = 8
TCPI_OPT_ECN_SEEN = 16
TCPI_OPT_SYN_DATA = 32
TCPI_OPT_USEC_TS = 64
TCPI_OPT_TFO_CHILD = 128

# net.ipv4.tcp_fastopen bits, by the names Linux gives them (include/net/tcp.h)
TFO_CLIENT_ENABLE = 0x1
TFO_SERVER_ENABLE = 0x2
TFO_CLIENT_NO_COOKIE = 0x4
TFO_SERVER_COOKIE_NOT_REQD = 0x200
TFO_SERVER_WO_SOCKOPT1 = 0x400

#: The TcpExt counters that concern TCP Fast Open, in /proc/net/netstat order.
TFO_COUNTERS = (
    "TCPFastOpenActive",
    "TCPFastOpenActiveFail",
    "TCPFastOpenPassive",
    "TCPFastOpenPassiveFail",
    "TCPFastOpenListenOverflow",
    "TCPFastOpenCookieReqd",
    "TCPFastOpenBlackhole",
    "TCPFastOpenPassiveAltKey",
)
