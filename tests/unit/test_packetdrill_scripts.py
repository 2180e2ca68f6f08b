"""The team's packetdrill scripts, run against the engine in virtual time.

Each script asserts behaviour packet by packet (see the comment at its top); the same scripts run
against the Linux kernel in tests/live/test_packetdrill_kernel.py, so a script that passes here
too shows the engine does what Linux does. A runner that stopped checking would be caught by the
deliberately wrong scripts below.
"""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path
from typing import cast

import pytest
from click.testing import CliRunner

from fastopen.cli import main
from fastopen.engine import Host
from fastopen.lab.netns import Netns
from fastopen.packetdrill import (
    Config,
    ScriptError,
    ScriptSyntaxError,
    parse_script,
    run_file,
)
from fastopen.packetdrill.kernel import KernelStack
from fastopen.packetdrill.run import run_script
from fastopen.packetdrill.shell import EngineStack, ScriptFiles, ShellCommands

HERE = Path(__file__).resolve().parent.parent / "packetdrill"
TEAM = sorted(HERE.glob("*.pkt"))


def test_every_behaviour_has_a_script() -> None:
    names = {p.stem for p in TEAM}
    for behaviour in (
        "server-cookie-request",
        "server-cookie-data",
        "server-invalid-cookie",
        "server-backup-key",
        "server-experimental-option",
        "server-backlog-overflow",
        "server-synack-retransmit",
        "server-no-cookie",
        "server-fin-in-syn",
        "server-ipv6-cookie",
        "client-msg-fastopen",
        "client-fastopen-connect",
        "client-synack-acks-syn-only",
        "client-partial-ack",
        "client-syn-retransmit",
        "client-exp-fallback",
        "client-blocking-connect",
        "client-blocking-sendto",
        "client-syncnt",
        "server-disconnect",
        "sysctl-knobs",
        "client-syn-data-frag-needed",
        "server-icmp-child",
        "client-delayed-ack",
        "client-keepalive",
        "client-user-timeout",
        "client-user-timeout-probe",
        "client-user-timeout-keepalive",
        "client-icmp-unreachable",
        "client-syn-data-packet-too-big",
        "client-usec-ts",
        "server-ioctl-queues",
        "server-maxseg",
        "server-usec-ts",
        "server-paws",
        "server-time-wait",
        "server-ecn",
        "server-urgent",
        "server-md5-unexpected",
        "server-retransmit-psh-cut",
        "server-retransmit-psh-end",
        "client-sndbuf-truesize",
    ):
        assert behaviour in names


@pytest.mark.parametrize("path", TEAM, ids=lambda p: p.name)
def test_team_script(path: Path) -> None:
    result = run_file(path)
    assert result.events == len(parse_script(path.read_text()).events)
    assert result.packets_out > 0


def test_team_scripts_use_only_lab_addresses() -> None:
    for path in TEAM:
        options = parse_script(path.read_text(), str(path)).options
        local, remote = options["local_ip"], options["remote_ip"]
        assert (local, remote) in (
            ("198.18.0.1", "198.18.0.2"),
            ("fd00:f0::1", "fd00:f0::2"),
        ), path.name


def test_kernel_backend_refuses_other_addresses() -> None:
    script = parse_script("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n", "default.pkt")
    with pytest.raises(ScriptError) as info:
        run_script(script, Config(stack="kernel"))
    assert "only uses 198.18.0.0/15 and fd00::/8, not the local address 192.168.0.1" in str(
        info.value
    )
    v6 = parse_script("--local_ip=fd00::1 --remote_ip=2001:db8::1\n", "v6.pkt")
    with pytest.raises(ScriptError, match="remote address 2001:db8::1"):
        run_script(v6, Config(stack="kernel"))


SERVER_HEAD = """`../common/defaults.sh
 sysctl -q net.ipv4.tcp_timestamps=0`
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 10) = 0
   +0 setsockopt(3, SOL_TCP, TCP_FASTOPEN, [10], 4) = 0
"""


def fails(body: str) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        run_script(parse_script(SERVER_HEAD + body, "wrong.pkt"))
    return info.value


def test_wrong_cookie_names_line_and_both_packets() -> None:
    err = fails(
        "   +0 < S 0:0(0) win 65535 <mss 1460,nop,nop,sackOK,nop,wscale 7,FO,nop,nop>\n"
        "   +0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8,"
        "FO 0000000000000000,nop,nop>\n"
    )
    assert err.line == 8
    lines = str(err).splitlines()
    assert lines[0] == "wrong.pkt:8: error handling packet: bad value outbound TCP option FO"
    assert lines[1].startswith("script packet:  0.000000 S. 0:0(0) ack 1")
    assert "FO 0000000000000000" in lines[1]
    assert lines[2].startswith("actual packet:  0.000000 S. 0:0(0) ack 1 win 65535")
    assert "FO 3021b9d889017eeb" in lines[2]


def test_data_not_acknowledged_is_a_field_error() -> None:
    err = fails(
        "   +0 < S 0:10(10) win 65535 <mss 1460,FO 0011223344556677,nop,nop>\n"
        "   +0 > S. 0:0(0) ack 11 <...>\n"
    )
    assert err.line == 8
    assert "tcp_ack_seq: expected: 11 (0xb) vs actual: 1 (0x1)" in str(err)


def test_timing_and_missing_packets() -> None:
    early = fails(
        "   +0 < S 0:0(0) win 65535 <mss 1460,FO,nop,nop>\n"
        "   +0 > S. 0:0(0) ack 1 <...>\n"
        "   +2 > S. 0:0(0) ack 1 <...>\n"
    )
    assert early.line == 9
    assert "timing error: expected outbound packet at 2.000000 sec" in str(early)
    assert "happened at 1.000000 sec" in str(early)
    missing = fails("   +0 > S. 0:0(0) ack 1 <...>\n")
    assert missing.line == 7
    assert "expected outbound packet was not sent" in str(missing)


def test_late_packet_and_time_ranges() -> None:
    late = fails(
        "   +0 < S 0:0(0) win 65535 <mss 1460,FO,nop,nop>\n"
        "   +0 > S. 0:0(0) ack 1 <...>\n"
        " +0.5 > S. 0:0(0) ack 1 <...>\n"
    )
    assert "expected outbound packet at 0.500000 sec but happened at 1.000000 sec" in str(late)
    # A range, and "*", accept the retransmission when it comes.
    run_script(
        parse_script(
            SERVER_HEAD + "   +0 < S 0:0(0) win 65535 <mss 1460,FO,nop,nop>\n"
            "   +0 > S. 0:0(0) ack 1 <...>\n"
            "+0.5~+1.5 > S. 0:0(0) ack 1 <...>\n"
            "   * > S. 0:0(0) ack 1 <...>\n"
        )
    )


def test_blocking_call_must_return_in_its_window() -> None:
    body = (
        "   +0 < S 0:0(0) win 65535 <mss 1460,nop,nop,sackOK,nop,wscale 7>\n"
        "   +0 > S. 0:0(0) ack 1 <...>\n"
        "   +0 < . 1:1(0) ack 1 win 502\n"
        "   +0 accept(3, ..., ...) = 4\n"
        "   +0{window} read(4, ..., 100) = 5\n"
        " +0.2 < P. 1:6(5) ack 1 win 502\n"
    )
    run_script(parse_script(SERVER_HEAD + body.format(window="...0.2")))
    err = fails(body.format(window=""))
    assert err.line == 11
    assert "timing error: expected system call return at 0.000000 sec" in str(err)
    assert "happened at 0.200000 sec" in str(err)


def test_bad_script_option() -> None:
    with pytest.raises(ScriptSyntaxError, match="bad value for --bogus"):
        run_script(parse_script("--bogus=1\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"))


def test_syscall_result_errno_and_assertion() -> None:
    err = fails("   +0 accept(3, ..., ...) = 4\n")
    assert err.line == 7
    assert "blocking system call never returned" in str(err)
    wrong = fails("   +0 listen(3, 10) = -1 EINVAL (Invalid argument)\n")
    assert "runtime error in listen call: expected result -1 EINVAL but got 0" in str(wrong)
    assertion = fails(
        "   +0 < S 0:10(10) win 65535 <mss 1460,FO 3021b9d889017eeb,nop,nop>\n"
        "   +0 > S. 0:0(0) ack 11 <...>\n"
        "   +0 %{ assert tcpi_options & TCPI_OPT_SYN_DATA == 0, tcpi_options }%\n"
    )
    assert assertion.line == 9
    assert "assertion failed" in str(assertion)


def test_a_python_block_may_end_in_a_line_continuation() -> None:
    """packetdrill writes a %{ }% block followed by a blank line (code.c write_text), so its
    statements may end in a backslash (tcp_info/tcp-info-rwnd-limited.pkt does)."""
    syn = (
        "   +0 < S 0:10(10) win 65535 <mss 1460,FO 3021b9d889017eeb,nop,nop>\n"
        "   +0 > S. 0:0(0) ack 11 <...>\n"
    )
    block = "   +0 %{{ assert tcpi_state == {state}, tcpi_state;\\\n assert tcpi_rto > 0;\\\n}}%\n"
    run_script(parse_script(SERVER_HEAD + syn + block.format(state=3), "ok.pkt"))
    assert "assertion failed" in str(fails(syn + block.format(state=1)))


def test_python_blocks_share_their_names_as_one_program() -> None:
    """packetdrill runs every %{ }% block as one Python program (code.c), so a name one block
    sets is there in a later one (cubic/cubic-hystart-delay-rtt-jumps-upward.pkt sets
    TCP_INFINITE_SSTHRESH once); tcp_info's fields are each block's own."""
    syn = (
        "   +0 < S 0:10(10) win 65535 <mss 1460,FO 3021b9d889017eeb,nop,nop>\n"
        "   +0 %{ cwnd = tcpi_snd_cwnd; cwnd += 1 }%\n"
        "   +0 > S. 0:0(0) ack 11 <...>\n"
    )
    later = "   +0 %{ assert cwnd == tcpi_snd_cwnd + 1, (cwnd, tcpi_snd_cwnd) }%\n"
    run_script(parse_script(SERVER_HEAD + syn + later, "ok.pkt"))
    alone = syn.replace("cwnd = tcpi_snd_cwnd; cwnd += 1", "pass")
    assert "name 'cwnd' is not defined" in str(fails(alone + later))  # a fresh run's


def test_getsockopt_values_are_checked() -> None:
    qlen = fails("   +0 getsockopt(3, SOL_TCP, TCP_FASTOPEN, [11], [4]) = 0\n")
    assert qlen.line == 7
    assert "getsockopt: expected value 11 but got 10" in str(qlen)
    info = fails(
        "   +0 getsockopt(3, SOL_TCP, TCP_INFO, {tcpi_state=TCP_ESTABLISHED, ...}, [...]) = 0\n"
    )
    assert "tcpi_state expected 1 but got 10" in str(info)


def test_unknown_shell_command_and_sysctl() -> None:
    err = fails("\n+0 `rm -rf /tmp/nothing`\n")
    assert err.line == 8
    assert "shell command failed or unsupported: 'rm -rf /tmp/nothing'" in str(err)
    knob = fails("+0 `sysctl -q net.ipv4.tcp_congestion_control=vegas`\n")
    assert knob.line == 7
    # An alternative after || runs when the first command is unsupported.
    run_script(
        parse_script(SERVER_HEAD + "+0 `sysctl -q net.ipv4.nope=1 || ip tcp_metrics flush all`\n")
    )


def test_unsupported_syscall_is_a_syntax_level_error() -> None:
    err = fails("   +0 vmsplice(3, NULL, 10, 0) = 10\n")
    assert "unsupported system call vmsplice()" in str(err)
    with pytest.raises(ScriptSyntaxError):
        parse_script("+0 > S 0:0(0) <mss>", "x.pkt")


def test_cli_runs_many_scripts_and_fails_on_any(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pkt"
    bad.write_text(
        SERVER_HEAD
        + "   +0 < S 0:0(0) win 65535 <mss 1460,FO,nop,nop>\n   +0 > S. 0:0(0) ack 2 <...>\n"
    )
    good = HERE / "server-cookie-request.pkt"
    result = CliRunner().invoke(main, ["packetdrill", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"ok {good}" in result.output
    assert f"{bad}:8: error handling packet: live packet field tcp_ack_seq" in result.output
    assert "1 passed, 1 failed" in result.output
    ok = CliRunner().invoke(main, ["packetdrill", str(good)])
    assert ok.exit_code == 0
    assert "1 passed, 0 failed" in ok.output


def test_cli_ip_version_and_tolerance(tmp_path: Path) -> None:
    script = tmp_path / "v6.pkt"
    script.write_text(
        SERVER_HEAD + "   +0 < S 0:0(0) win 65535 <mss 1440,FO,nop,nop>\n"
        "   +0 > S. 0:0(0) ack 1 <mss 1440,FO c1d1e9742a47a9bc,nop,nop>\n"
        "+0.990 getsockopt(3, SOL_TCP, TCP_FASTOPEN, [10], [4]) = 0\n"
        "+0.007 > S. 0:0(0) ack 1 <...>\n"
    )
    v6 = CliRunner().invoke(main, ["packetdrill", "--ip-version", "ipv6", str(script)])
    assert v6.exit_code == 0, v6.output
    strict = CliRunner().invoke(
        main, ["packetdrill", "--ip-version", "ipv6", "--tolerance-usecs", "1000", str(script)]
    )
    assert strict.exit_code == 1
    assert "tolerance 1000 usecs" in strict.output


def test_cli_defines_like_packetdrill(tmp_path: Path) -> None:
    script = tmp_path / "defines.pkt"
    script.write_text(
        SERVER_HEAD + "   +0 < S 0:10(10) win 65535 <mss 1460,FO TFO_COOKIE,nop,nop>\n"
        "   +0 > S. 0:0(0) ack 11 <...>\n"
    )
    ok = CliRunner().invoke(main, ["packetdrill", "-D", "TFO_COOKIE=3021b9d889017eeb", str(script)])
    assert ok.exit_code == 0, ok.output
    wrong = CliRunner().invoke(
        main, ["packetdrill", "-D", "TFO_COOKIE=0011223344556677", str(script)]
    )
    assert wrong.exit_code == 1
    assert "tcp_ack_seq: expected: 11 (0xb) vs actual: 1 (0x1)" in wrong.output
    missing = CliRunner().invoke(main, ["packetdrill", str(script)])
    assert missing.exit_code == 1
    assert "bad TCP option 'FO TFO_COOKIE'" in missing.output
    bad = CliRunner().invoke(main, ["packetdrill", "-D", "nonsense", str(script)])
    assert bad.exit_code == 2


def test_ip_route_features_tcp_usec_ts() -> None:
    host = Host(["198.18.0.1"])
    shell = ShellCommands(EngineStack(host))
    assert shell.run("ip route replace 198.18.0.2/32 dev tun0 features tcp_usec_ts") is None
    assert shell.run("ip route add fd00::/8 dev tun0 features tcp_usec_ts") is None
    usec = host.settings.usec_ts
    assert usec(ip_address("198.18.0.2")) and usec(ip_address("fd00::5"))
    assert not usec(ip_address("198.18.0.3"))
    assert shell.run("ip route change 198.18.0.2 dev tun0") is None  # the feature goes
    assert not usec(ip_address("198.18.0.2")) and usec(ip_address("fd00::5"))
    # what the stacks are not told of is refused, so no script runs without what it asked
    for wrong in (
        "ip route add 198.18.0.2 dev tun0 features ecn",
        "ip route add 198.18.0.2 via 198.18.0.3 dev tun0",
        "ip route add 198.18.0.2 dev tun0 features",
        "ip route add nonsense dev tun0",
        "ip route del 198.18.0.2 dev tun0",
    ):
        assert shell.run(wrong) == wrong


def test_shell_commands_map_onto_the_host() -> None:
    host = Host(["192.168.0.1"])
    shell = ShellCommands(EngineStack(host))
    assert (
        shell.run(
            "../common/defaults.sh\n"
            " sysctl -q net.ipv4.tcp_fastopen=0x603 net.core.somaxconn=7 \\\n"
            "   net.ipv4.tcp_fastopen_blackhole_timeout_sec=3600 &> /dev/null;"
            " ./set_sysctls.py /proc/sys/net/ipv4/tcp_window_scaling=0"
        )
        is None
    )
    assert host.settings.tcp_fastopen == 0x603
    assert host.settings.somaxconn == 7
    assert host.settings.blackhole_timeout == 3600.0
    assert host.settings.window_scaling is False
    assert (
        host.settings.rmem == 540000
    )  # defaults.sh's tcp_rmem, whose maximum of 15 MB gives wscale 8
    assert host.settings.wscale == 8
    assert shell.run("sysctl -q net.ipv4.tcp_rmem='4096 131072 6291456'") is None
    assert (host.settings.rmem, host.settings.wscale) == (131072, 7)  # Linux's stock values
    assert host.settings.keys.to_text().startswith("a1a1a1a1-b2b2b2b2")
    assert (
        shell.run("sysctl -q net.ipv4.tcp_fastopen_key=zz")
        == "sysctl -q net.ipv4.tcp_fastopen_key=zz"
    )
    assert shell.run("./defaults.sh") is None
    assert host.settings.tcp_fastopen == 0x3  # the Linux selftests' defaults.sh
    assert shell.run("sysctl -q net.ipv4.tcp_ecn=1") is None
    assert host.settings.ecn == 1
    # AccECN (3..5) is not modelled: refused, so no script runs under settings it did not get
    assert shell.run("sysctl -q net.ipv4.tcp_ecn=3") == "sysctl -q net.ipv4.tcp_ecn=3"
    assert host.settings.early_retrans == 4  # defaults.sh's (TLP on, as Linux's 3)
    assert shell.run("sysctl -q net.ipv4.tcp_early_retrans=0") is None
    assert host.settings.early_retrans == 0
    # Linux's range is 0 to 4
    assert shell.run("sysctl net.ipv4.tcp_early_retrans=5") == "sysctl net.ipv4.tcp_early_retrans=5"
    assert shell.run("sysctl -q net/ipv4/tcp_pacing_ss_ratio=300") is None
    assert shell.run("sysctl -q net.ipv4.tcp_pacing_ca_ratio=0") is None
    assert (host.settings.pacing_ss_ratio, host.settings.pacing_ca_ratio) == (300, 0)
    # Linux: 0 to 1000 percent, EINVAL past them
    bad = "sysctl -q net.ipv4.tcp_pacing_ss_ratio=1001"
    assert shell.run(bad) == bad and host.settings.pacing_ss_ratio == 300


def test_device_offloads_and_root_qdisc_map_onto_the_host() -> None:
    """ethtool -K tun0 tso/gso on|off is the engine's device (Settings.tso; GSO, which Linux
    TCP always has, changes nothing); tc qdisc fq on tun0's root paces (Settings.pacing), pfifo
    limit 0 drops every packet (Settings.qdisc_drops), deleting it goes back to the default
    that does neither; other devices, features, qdiscs or parameters fail."""
    host = Host(["192.168.0.1"], tso=True)
    shell = ShellCommands(EngineStack(host))
    assert shell.run("ethtool -K tun0 tso off gso off") is None
    assert host.settings.tso is False
    assert shell.run("ethtool -K tun0 gso on tso on") is None
    assert host.settings.tso is True
    assert shell.run("ethtool -K tun0 tso off") is None
    assert shell.run("tc qdisc replace dev tun0 root fq") is None
    assert host.settings.pacing is True
    assert shell.run("tc qdisc delete dev tun0 root 2>/dev/null") is None
    assert host.settings.pacing is False
    assert shell.run("tc qdisc add dev tun0 root pfifo limit 0") is None
    assert (host.settings.qdisc_drops, host.settings.pacing) == (True, False)
    assert shell.run("tc qdisc delete dev tun0 root") is None
    assert host.settings.qdisc_drops is False
    for refused in (
        "ethtool -K eth0 tso off",
        "ethtool -K tun0 lro off",
        "ethtool -K tun0 tso",
        "tc qdisc add dev tun0 root pfifo limit 1",
        "tc qdisc replace dev tun0 root fq maxrate 1mbit",
        "tc qdisc add dev eth0 root fq",
    ):
        assert shell.run(refused) == refused


def test_cubic_module_parameters_map_onto_the_host() -> None:
    """echo N > /sys/module/tcp_cubic/parameters/NAME sets the HyStart parameters the engine
    has (Settings.cubic); another parameter, module or value fails, and the kernel backend
    refuses them all (a module's parameters are the machine's, not the namespace's)."""
    host = Host(["192.168.0.1"])
    shell = ShellCommands(EngineStack(host))
    params = "/sys/module/tcp_cubic/parameters/"
    assert shell.run(f"echo 1 > {params}hystart_detect") is None
    assert shell.run(f"echo 0 >{params}hystart\necho 32 > {params}hystart_low_window") is None
    assert shell.run(f"echo 0x3e8 > {params}hystart_ack_delta_us") is None
    cubic = host.settings.cubic
    assert (cubic.hystart_detect, cubic.hystart, cubic.hystart_low_window) == (1, 0, 32)
    assert cubic.hystart_ack_delta_us == 1000
    for refused in (
        f"echo 600 > {params}beta",
        f"echo x > {params}hystart",
        "echo 1 > /sys/module/tcp_bbr/parameters/hystart",
    ):
        assert shell.run(refused) == refused
    assert not KernelStack(cast(Netns, None)).module_param("tcp_cubic", "hystart", "0")


def test_script_files_live_in_memory_and_only_in_tmp() -> None:
    """rm -f and dd of=/dev/zero make and remove a script's files, in memory (ScriptFiles:
    nothing on the machine's file system); other paths, operands or sources fail."""
    files = ScriptFiles()
    shell = ShellCommands(EngineStack(Host(["192.168.0.1"])), files)
    assert (
        shell.run(
            "/bin/rm -f /tmp/testfile\n"
            "/bin/dd bs=1 count=5 if=/dev/zero of=/tmp/testfile status=none"
        )
        is None
    )
    assert files.data == {"/tmp/testfile": bytes(5)}
    assert shell.run("rm -f /tmp/testfile /tmp/other") is None
    assert files.data == {}
    for refused in (
        "rm -f /etc/passwd",
        "rm -rf /tmp/x",
        "rm /tmp/x",
        "rm -f /tmp/../etc/x",
        "dd bs=1 count=5 if=/dev/urandom of=/tmp/x",
        "dd bs=1 count=5 if=/dev/zero of=/var/tmp/x",
        "dd bs=1 count=5 if=/dev/zero of=/tmp/x conv=notrunc",
    ):
        assert shell.run(refused) == refused
    assert files.data == {}
    # without a script's files (a bare shell), rm and dd are unknown commands
    assert ShellCommands(EngineStack(Host(["192.168.0.1"]))).run("rm -f /tmp/x") == "rm -f /tmp/x"


def test_open_and_sendfile_send_a_scripts_file() -> None:
    """open() of a file the script made and sendfile() of it, as a write of its bytes
    (sendfile/sendfile-simple.pkt); ENOENT for a file it did not make."""
    body = (
        "   +0 `dd bs=1 count=5 if=/dev/zero of=/tmp/pda-file status=none`\n"
        "   +0 < S 0:0(0) win 65535 <mss 1460>\n"
        "   +0 > S. 0:0(0) ack 1 <mss 1460>\n"
        "   +0 < . 1:1(0) ack 1 win 65535\n"
        "   +0 accept(3, ..., ...) = 4\n"
        '   +0 open("/tmp/pda-file", O_RDONLY) = 5\n'
        "   +0 sendfile(4, 5, [0], 5) = 5\n"
        "   +0 > P. 1:6(5) ack 1\n"
    )
    run_script(parse_script(SERVER_HEAD + body, "sendfile.pkt"))
    missing = fails('   +0 open("/tmp/pda-none", O_RDONLY) = 5\n')
    assert "expected result 5 but got -1 ENOENT" in str(missing)


def test_congestion_control_sysctls_and_socket_option() -> None:
    """tcp_congestion_control takes the engine's algorithms only (Linux: ENOENT for another),
    tcp_slow_start_after_idle is a flag (defaults.sh: cubic, 0); TCP_CONGESTION as a string."""
    stack = EngineStack(Host(["198.18.0.1"]))
    assert stack.sysctl("net.ipv4.tcp_congestion_control", "reno")
    assert stack.host.settings.congestion_control == "reno"
    assert not stack.sysctl("net.ipv4.tcp_congestion_control", "vegas")
    assert stack.sysctl("net.ipv4.tcp_congestion_control", "bbr")
    assert stack.host.settings.congestion_control == "bbr"
    assert stack.sysctl("net.ipv4.tcp_slow_start_after_idle", "0")
    assert not stack.host.settings.slow_start_after_idle
    run_script(
        parse_script(
            SERVER_HEAD + '   +0 setsockopt(3, SOL_TCP, TCP_CONGESTION, "reno", 4) = 0\n'
            '   +0 setsockopt(3, SOL_TCP, TCP_CONGESTION, "vegas", 5) = -1 ENOENT (No such file)\n'
            '   +0 setsockopt(3, SOL_TCP, TCP_CONGESTION, "bbr", 3) = 0\n'
        )
    )


def test_grep_of_proc_net_tcp_sees_the_engines_sockets() -> None:
    """md5/md5-only-on-client-ack.pkt's ``grep " 0A " /proc/net/tcp /proc/net/tcp6 | grep
    ":1F90"``: the listener on port 8080 in LISTEN (0A), as tcp4_seq_show writes it."""
    host = Host(["192.168.0.1"])
    shell = ShellCommands(EngineStack(host))
    command = 'grep " 0A " /proc/net/tcp /proc/net/tcp6 | grep ":1F90"'
    assert shell.run(command) == command  # nothing listens yet: grep finds nothing
    listener = host.socket()
    listener.bind(("192.168.0.1", 8080))
    listener.listen(1)
    assert shell.run(command) is None
    assert EngineStack(host).proc_net_tcp(4)[1] == (
        "   0: 0100A8C0:1F90 00000000:0000 0A 00000000:00000000"
    )
    assert shell.run('grep ":1F90" /proc/net/tcp6') == 'grep ":1F90" /proc/net/tcp6'
    assert shell.run("grep -v x /proc/net/tcp") == "grep -v x /proc/net/tcp"  # unknown flag
    assert shell.run("grep x /etc/passwd") == "grep x /etc/passwd"  # only the stack's files
