%%% @doc BEAM reference implementations of the otter benchmark workloads.
%%%
%%% The otter C runtime implements the same workloads with the same names
%%% and parameters; this module produces the Erlang/OTP figures they are
%%% compared against.  It is compiled and started by `run.sh' in this
%%% directory:
%%%
%%%   erl +S 2:2 ... -eval 'otter_bench:main(init:get_plain_arguments())'
%%%       -s init stop -extra OUT.tsv [--filter REGEX] [--repetitions N (5)]
%%%
%%% Every repetition of every workload runs in a freshly spawned process
%%% (so garbage from one run cannot affect the next), after a full garbage
%%% collection of all processes.  The reported figure for each workload is
%%% the median over the repetitions.
%%%
%%% Output: a human-readable table on stdout, and a TSV file with the
%%% columns  name ns_per_op p50_ns p99_ns p999_ns value unit  where `-'
%%% marks a field that does not apply to a workload.
-module(otter_bench).

-export([main/1]).
%% Not part of the public API: idle_process_bytes/0 is called in a peer
%% VM, and idle_loop/1 is spawned with spawn/3 so that the idle processes
%% can be recognised by their initial call (see kill_idle/0).
-export([idle_process_bytes/0, idle_loop/1]).

%% Workload parameters (must match the C implementation).
-define(SPAWN_EXIT_PROCS, 1000000).
-define(PINGPONG_ROUND_TRIPS, 1000000).
-define(RING_SIZE, 1000).
-define(RING_HOPS, 1000000).
-define(SKYNET_LEAVES, 1000000).
-define(SKYNET_FANOUT, 10).
-define(SKYNET_PROCS, 1111111).
-define(SKYNET_SUM, 499999500000).
-define(FAN_IN_SENDERS, 2).
-define(FAN_IN_PER_SENDER, 1000000).
-define(LINK_EXIT_PAIRS, 100000).
-define(IDLE_PROCS, 1000000).

%% The idle workload spawns in batches and waits for each batch to block
%% in `receive', which bounds the spawner's mailbox (a mailbox holding a
%% million "ready" messages would itself inflate the resident set).
-define(IDLE_BATCH, 10000).

%% Column order of the TSV file and of the table.
-define(TSV_HEADER, "name\tns_per_op\tp50_ns\tp99_ns\tp999_ns\tvalue\tunit\n").

%%====================================================================
%% Entry point
%%====================================================================

%% @doc Run the benchmarks. Args are the command-line arguments as strings:
%% `OUT.tsv [--filter REGEX] [--repetitions N]'.  Halts the VM with a
%% non-zero status on a usage error or a failed workload.
-spec main([string()]) -> ok.
main(Args) ->
    try
        run(parse_args(Args))
    catch
        throw:{usage, Msg} ->
            io:format(standard_error, "otter_bench: ~ts~n~ts", [Msg, usage()]),
            erlang:halt(2);
        throw:{fatal, Msg} ->
            io:format(standard_error, "otter_bench: ~ts~n", [Msg]),
            erlang:halt(1);
        Class:Reason:Stack ->
            io:format(standard_error, "otter_bench: FAILED: ~p:~p~n~p~n",
                      [Class, Reason, Stack]),
            erlang:halt(1)
    end.

usage() ->
    "usage: run.sh OUT.tsv [--filter REGEX] [--repetitions N (5)]\n".

%% The workloads, in reporting order, each with the spawn options of the
%% process it runs in.
%%
%% spawn_exit and fan_in make that process the receiver of a mailbox that
%% grows to up to a million messages.  With the default on-heap message
%% queue every garbage collection of the receiver has to walk its whole
%% queue, which makes these workloads quadratic (spawn_exit measured
%% ~95 us/process on-heap vs ~2 us off-heap on the 2-core box).  The
%% documented remedy for processes that receive bulk messages is the
%% off_heap message queue, so those two receivers use it; every other
%% process uses the VM defaults.  link_exit_storm's driver receives
%% 100,000 reports in the same spawn-all-then-receive-all shape and uses
%% it too (measured 15-48 us/pair on-heap vs 2.7-5.7 us off-heap).
workloads() ->
    OffHeap = [{message_queue_data, off_heap}],
    [{"spawn_exit",         fun spawn_exit/0,         OffHeap},
     {"pingpong",           fun pingpong/0,           []},
     {"ring",               fun ring/0,               []},
     {"skynet",             fun skynet/0,             []},
     {"fan_in",             fun fan_in/0,             OffHeap},
     {"link_exit_storm",    fun link_exit_storm/0,    OffHeap},
     {"idle_process_bytes", fun idle_process_bytes_fresh_vm/0, []}].

run(#{out := Out, filter := Filter, reps := Reps}) ->
    Selected = [W || {Name, _, _} = W <- workloads(), selected(Name, Filter)],
    Selected =/= [] orelse throw({usage, "--filter matches no workload"}),
    write_tsv(Out, []),   % fail now, not after the run, if Out is unwritable
    io:format("BEAM: OTP ~s (erts ~s), ~b schedulers online, "
              "~b repetition(s), median reported~n~n",
              [erlang:system_info(otp_release), erlang:system_info(version),
               erlang:system_info(schedulers_online), Reps]),
    Results = [{Name, measure(Name, Fun, SpawnOpts, Reps)}
               || {Name, Fun, SpawnOpts} <- Selected],
    print_table(Results),
    write_tsv(Out, Results),
    io:format("~nwrote ~ts~n", [Out]).

selected(_Name, undefined) -> true;
selected(Name, Regex) -> re:run(Name, Regex, [{capture, none}]) =:= match.

%%====================================================================
%% Argument parsing
%%====================================================================

parse_args(Args) ->
    parse_args(Args, #{out => undefined, filter => undefined, reps => 5}).

parse_args([], #{out := undefined}) ->
    throw({usage, "missing OUT.tsv argument"});
parse_args([], Opts) ->
    Opts;
parse_args([Help | _], _Opts) when Help =:= "-h"; Help =:= "--help" ->
    io:format("~ts", [usage()]),
    erlang:halt(0);
parse_args(["--filter", Pattern | Rest], Opts) ->
    case re:compile(Pattern) of
        {ok, Regex} ->
            parse_args(Rest, Opts#{filter := Regex});
        {error, {Why, Pos}} ->
            throw({usage, io_lib:format("bad --filter regex ~tp: ~s at ~b",
                                        [Pattern, Why, Pos])})
    end;
parse_args(["--repetitions", N | Rest], Opts) ->
    case string:to_integer(N) of
        {Reps, ""} when Reps >= 1 ->
            parse_args(Rest, Opts#{reps := Reps});
        _ ->
            throw({usage, "--repetitions needs a positive integer, got " ++ N})
    end;
parse_args([Opt], _Opts) when Opt =:= "--filter"; Opt =:= "--repetitions" ->
    throw({usage, Opt ++ " needs a value"});
parse_args(["-" ++ _ = Opt | _], _Opts) ->
    throw({usage, "unknown option " ++ Opt});
parse_args([Out | Rest], #{out := undefined} = Opts) ->
    parse_args(Rest, Opts#{out := Out});
parse_args([Extra | _], _Opts) ->
    throw({usage, "unexpected argument " ++ Extra}).

%%====================================================================
%% Measurement harness
%%====================================================================

%% Run a workload Reps times and return the per-field medians.  A result
%% is a map holding only the fields that apply to the workload:
%% ns_per_op, p50, p99, p999, value, unit, beam_bytes.
measure(Name, Fun, SpawnOpts, Reps) ->
    Runs = [begin
                io:format(standard_error, "  running ~s (~b/~b)~n",
                          [Name, I, Reps]),
                run_isolated(Fun, SpawnOpts)
            end || I <- lists:seq(1, Reps)],
    [First | _] = Runs,
    maps:map(fun(unit, Unit) -> Unit;
                (Key, _) -> median([maps:get(Key, R) || R <- Runs])
             end, First).

%% Run Fun in a fresh process (spawned with SpawnOpts), after collecting
%% garbage everywhere, and return its result.  The result travels back as the exit reason, so the
%% harness's own mailbox stays empty.  A crash in the workload is fatal.
run_isolated(Fun, SpawnOpts) ->
    collect_garbage(),
    {Pid, MRef} = spawn_opt(fun() -> exit({ok, Fun()}) end,
                            [monitor | SpawnOpts]),
    receive
        {'DOWN', MRef, process, Pid, {ok, Result}} -> Result;
        {'DOWN', MRef, process, Pid, Reason} -> error({workload_crashed, Reason})
    end.

collect_garbage() ->
    lists:foreach(fun erlang:garbage_collect/1, erlang:processes()).

now_ns() ->
    erlang:monotonic_time(nanosecond).

median(Xs) ->
    Sorted = lists:sort(Xs),
    Len = length(Sorted),
    case Len rem 2 of
        1 -> lists:nth(Len div 2 + 1, Sorted);
        0 -> (lists:nth(Len div 2, Sorted) + lists:nth(Len div 2 + 1, Sorted)) / 2
    end.

%% Nearest-rank percentile of a sorted tuple of samples.
percentile(Sorted, P) ->
    Rank = max(1, ceil(P / 100 * tuple_size(Sorted))),
    element(Rank, Sorted).

%%====================================================================
%% Workloads
%%====================================================================

%% spawn_exit: spawn N processes that each send one message to the
%% spawner and exit; the spawner receives all N messages.  ns per process.
spawn_exit() ->
    N = ?SPAWN_EXIT_PROCS,
    Self = self(),
    T0 = now_ns(),
    spawn_n(N, fun() -> Self ! done end),
    await_n(N, done),
    T1 = now_ns(),
    #{ns_per_op => (T1 - T0) / N}.

spawn_n(0, _Fun) -> ok;
spawn_n(K, Fun) -> spawn(Fun), spawn_n(K - 1, Fun).

await_n(0, _Msg) -> ok;
await_n(K, Msg) -> receive Msg -> await_n(K - 1, Msg) end.

%% pingpong: N round trips between this process and an echo process.
%% As in the C version: ns_per_op comes from a plain run with no clock
%% reads in the loop; a second run times every round trip for the
%% percentiles. The samples are kept in an atomics array (no heap growth,
%% so no GC inside the timed loop).
pingpong() ->
    N = ?PINGPONG_ROUND_TRIPS,
    Pong = spawn_link(fun pong_loop/0),
    T0 = now_ns(),
    plain_loop(N, Pong),
    T1 = now_ns(),
    Samples = atomics:new(N, [{signed, false}]),
    ping_loop(1, N, Pong, Samples),
    Pong ! stop,
    Sorted = list_to_tuple(lists:sort([atomics:get(Samples, I)
                                       || I <- lists:seq(1, N)])),
    #{ns_per_op => (T1 - T0) / N,
      p50 => percentile(Sorted, 50),
      p99 => percentile(Sorted, 99),
      p999 => percentile(Sorted, 99.9)}.

plain_loop(0, _Pong) ->
    ok;
plain_loop(K, Pong) ->
    Pong ! {ping, self()},
    receive pong -> ok end,
    plain_loop(K - 1, Pong).

ping_loop(I, N, _Pong, _Samples) when I > N ->
    ok;
ping_loop(I, N, Pong, Samples) ->
    Start = now_ns(),
    Pong ! {ping, self()},
    receive pong -> ok end,
    atomics:put(Samples, I, now_ns() - Start),
    ping_loop(I + 1, N, Pong, Samples).

pong_loop() ->
    receive
        {ping, From} -> From ! pong, pong_loop();
        stop -> ok
    end.

%% ring: RING_SIZE processes in a ring; a token carrying the number of
%% hops left is injected into the first node and forwarded RING_HOPS
%% times in total.  The node that receives it with 0 hops left reports
%% back.  Building the ring is not timed.  ns per hop.
ring() ->
    Self = self(),
    Nodes = [spawn_link(fun() -> ring_node_init(Self) end)
             || _ <- lists:seq(1, ?RING_SIZE)],
    [First | Others] = Nodes,
    lists:foreach(fun({Node, Next}) -> Node ! {next, Next} end,
                  lists:zip(Nodes, Others ++ [First])),
    T0 = now_ns(),
    First ! {token, ?RING_HOPS},
    receive ring_done -> ok end,
    T1 = now_ns(),
    lists:foreach(fun(Node) -> Node ! stop end, Nodes),
    #{ns_per_op => (T1 - T0) / ?RING_HOPS}.

ring_node_init(Parent) ->
    receive {next, Next} -> ring_node(Parent, Next) end.

ring_node(Parent, Next) ->
    receive
        {token, 0} -> Parent ! ring_done, ring_node(Parent, Next);
        {token, K} -> Next ! {token, K - 1}, ring_node(Parent, Next);
        stop -> ok
    end.

%% skynet: a 10-ary tree of processes with 1,000,000 leaves (1,111,111
%% processes); each leaf returns its number, each node sums its children.
%% ns per process.
skynet() ->
    Self = self(),
    T0 = now_ns(),
    spawn(fun() -> skynet(Self, 0, ?SKYNET_LEAVES, ?SKYNET_FANOUT) end),
    Sum = receive {skynet, S} -> S end,
    T1 = now_ns(),
    Sum =:= ?SKYNET_SUM orelse
        error({skynet_wrong_sum, Sum, expected, ?SKYNET_SUM}),
    #{ns_per_op => (T1 - T0) / ?SKYNET_PROCS}.

skynet(Parent, Num, 1, _Fanout) ->
    Parent ! {skynet, Num};
skynet(Parent, Num, Size, Fanout) ->
    Self = self(),
    Sub = Size div Fanout,
    lists:foreach(fun(I) ->
                          spawn(fun() -> skynet(Self, Num + I * Sub, Sub, Fanout) end)
                  end, lists:seq(0, Fanout - 1)),
    Parent ! {skynet, skynet_sum(Fanout, 0)}.

skynet_sum(0, Acc) -> Acc;
skynet_sum(K, Acc) -> receive {skynet, S} -> skynet_sum(K - 1, Acc + S) end.

%% fan_in: FAN_IN_SENDERS processes each send FAN_IN_PER_SENDER messages
%% (small integers) to this process, which counts them all.  ns per
%% message (total wall time / total messages).
fan_in() ->
    Self = self(),
    Total = ?FAN_IN_SENDERS * ?FAN_IN_PER_SENDER,
    T0 = now_ns(),
    [spawn_link(fun() -> send_n(Self, ?FAN_IN_PER_SENDER) end)
     || _ <- lists:seq(1, ?FAN_IN_SENDERS)],
    count_n(Total),
    T1 = now_ns(),
    #{ns_per_op => (T1 - T0) / Total}.

send_n(_To, 0) -> ok;
send_n(To, K) -> To ! K, send_n(To, K - 1).

count_n(0) -> ok;
count_n(K) -> receive M when is_integer(M) -> count_n(K - 1) end.

%% link_exit_storm: LINK_EXIT_PAIRS linked pairs.  For each pair a watcher
%% is spawned that traps exits and spawn_links a child; the child exits
%% at once with reason `shutdown', and the watcher receives the
%% {'EXIT', Child, shutdown} message and reports to this process, which
%% spawns every watcher and then waits for every report.  A watcher that
%% gets anything else reports a failure, which fails the workload.
%% ns per pair (2 * LINK_EXIT_PAIRS processes).
link_exit_storm() ->
    N = ?LINK_EXIT_PAIRS,
    Self = self(),
    T0 = now_ns(),
    spawn_n(N, fun() -> link_watcher(Self) end),
    Bad = await_links(N, 0),
    T1 = now_ns(),
    Bad =:= 0 orelse error({link_exit_storm_wrong_exits, Bad, of_pairs, N}),
    #{ns_per_op => (T1 - T0) / N}.

link_watcher(Driver) ->
    process_flag(trap_exit, true),
    Child = spawn_link(fun() -> exit(shutdown) end),
    receive
        {'EXIT', Child, shutdown} -> Driver ! link_ok;
        Other -> Driver ! {link_bad, Other}
    end.

await_links(0, Bad) -> Bad;
await_links(K, Bad) ->
    receive
        link_ok -> await_links(K - 1, Bad);
        {link_bad, _} -> await_links(K - 1, Bad + 1)
    end.

%% idle_process_bytes must run in a VM that has never allocated that much
%% memory: the allocators keep some freed memory resident, and new
%% processes reuse it without growing the RSS (measured: ~2660 bytes/process
%% in a fresh VM, ~2420-2480 after other workloads or a previous
%% repetition, while the erlang:memory delta stays at ~2655).  So every
%% repetition runs in its own peer VM, started with the same scheduler
%% and process-limit settings as this one and connected over stdio (no
%% distribution needed).
idle_process_bytes_fresh_vm() ->
    CodeDir = filename:dirname(code:which(?MODULE)),
    Args = ["+S", integer_to_list(erlang:system_info(schedulers)) ++ ":" ++
                integer_to_list(erlang:system_info(schedulers_online)),
            "+P", integer_to_list(erlang:system_info(process_limit)),
            "-pa", CodeDir],
    {ok, Peer, _Node} = peer:start_link(#{connection => standard_io,
                                          args => Args}),
    try
        peer:call(Peer, ?MODULE, idle_process_bytes, [], infinity)
    after
        peer:stop(Peer)
    end.

%% idle_process_bytes: IDLE_PROCS processes alive at once, each blocked in
%% `receive'.  Value: OS resident-set delta per process (from
%% /proc/self/statm).  Also recorded: erlang:memory(total) delta per
%% process (beam_bytes, shown as a note under the table).  The pids are
%% deliberately not kept in a list (that list would be counted as well);
%% the idle processes are found again by their initial call.
idle_process_bytes() ->
    N = ?IDLE_PROCS,
    PageSize = page_size(),
    BaseCount = erlang:system_info(process_count),
    collect_garbage(),
    Rss0 = rss_pages() * PageSize,
    Mem0 = erlang:memory(total),
    spawn_idle(N),
    Rss1 = rss_pages() * PageSize,
    Mem1 = erlang:memory(total),
    Alive = kill_idle(),
    Alive =:= N orelse error({idle_processes_alive, Alive, expected, N}),
    wait_process_count(BaseCount),
    #{value => (Rss1 - Rss0) / N,
      unit => "bytes/process",
      beam_bytes => (Mem1 - Mem0) / N}.

%% Spawn Left idle processes, one batch at a time, waiting after each
%% batch until every process in it has reported that it is about to block.
spawn_idle(0) ->
    ok;
spawn_idle(Left) ->
    Batch = min(Left, ?IDLE_BATCH),
    Self = self(),
    lists:foreach(fun(_) -> spawn(?MODULE, idle_loop, [Self]) end,
                  lists:seq(1, Batch)),
    await_n(Batch, idle_ready),
    spawn_idle(Left - Batch).

idle_loop(Parent) ->
    Parent ! idle_ready,
    receive stop -> ok end.

%% Tell every idle process to stop; returns how many there were.
kill_idle() ->
    Idle = [P || P <- erlang:processes(),
                 erlang:process_info(P, initial_call) =:=
                     {initial_call, {?MODULE, idle_loop, 1}}],
    lists:foreach(fun(P) -> P ! stop end, Idle),
    length(Idle).

wait_process_count(Target) ->
    case erlang:system_info(process_count) =< Target of
        true -> ok;
        false -> timer:sleep(10), wait_process_count(Target)
    end.

%% Resident set size of this OS process, in pages.
rss_pages() ->
    {ok, Statm} = file:read_file("/proc/self/statm"),
    [_Size, Resident | _] = binary:split(Statm, [<<" ">>, <<"\n">>],
                                         [global, trim_all]),
    binary_to_integer(Resident).

page_size() ->
    case string:to_integer(os:cmd("getconf PAGESIZE")) of
        {Size, _} when is_integer(Size), Size > 0 -> Size;
        _ -> 4096
    end.

%%====================================================================
%% Output
%%====================================================================

print_table(Results) ->
    Row = "~-20s ~12s ~14s ~10s ~10s ~10s  ~s~n",
    io:format(Row, ["name", "ns/op", "ops/s", "p50", "p99", "p99.9", "value"]),
    io:format("~s~n", [lists:duplicate(94, $-)]),
    lists:foreach(
      fun({Name, R}) ->
              Value = case R of
                          #{value := V, unit := U} -> fmt_float(V) ++ " " ++ U;
                          _ -> "-"
                      end,
              io:format(Row, [Name,
                              fmt_float(maps:get(ns_per_op, R, none)),
                              fmt_rate(maps:get(ns_per_op, R, none)),
                              fmt_int(maps:get(p50, R, none)),
                              fmt_int(maps:get(p99, R, none)),
                              fmt_int(maps:get(p999, R, none)),
                              Value])
      end, Results),
    lists:foreach(
      fun({Name, #{beam_bytes := B}}) ->
              io:format("~nnote: ~s: erlang:memory(total) delta = ~s bytes/process"
                        " (value column is the OS RSS delta)~n",
                        [Name, fmt_float(B)]);
         (_) ->
              ok
      end, Results).

write_tsv(Path, Results) ->
    Rows = [lists:join($\t, [Name,
                             fmt_float(maps:get(ns_per_op, R, none)),
                             fmt_int(maps:get(p50, R, none)),
                             fmt_int(maps:get(p99, R, none)),
                             fmt_int(maps:get(p999, R, none)),
                             fmt_float(maps:get(value, R, none)),
                             maps:get(unit, R, "-")]) ++ "\n"
            || {Name, R} <- Results],
    case file:write_file(Path, [?TSV_HEADER | Rows]) of
        ok -> ok;
        {error, Why} ->
            throw({fatal, io_lib:format("cannot write ~ts: ~ts",
                                        [Path, file:format_error(Why)])})
    end.

fmt_float(none) -> "-";
fmt_float(X) -> float_to_list(float(X), [{decimals, 1}]).

fmt_int(none) -> "-";
fmt_int(X) -> integer_to_list(round(X)).

fmt_rate(none) -> "-";
fmt_rate(NsPerOp) when NsPerOp > 0 -> integer_to_list(round(1.0e9 / NsPerOp));
fmt_rate(_) -> "-".
