"""The tunables ember-core declares. Components read them with ``ember.config.get_setting``."""

from __future__ import annotations

from ember.common.setting import Setting

CORE_SETTINGS: list[Setting] = [
    Setting(
        name="fobs.max_depth",
        type=int,
        default=256,
        unit="levels",
        bounds="How deeply tuples, sets and registered objects may nest in one decoded FOBS "
        "message; deeper messages are refused with FOBSError instead of exhausting the stack.",
        advice="Raise it only for legitimately deep structures (deeply nested configs).",
        minimum=1,
    ),
    Setting(
        name="fobs.max_message_bytes",
        type=int,
        default=1 << 40,
        unit="bytes",
        bounds="The largest FOBS frame read from a stream or file; a header declaring more is "
        "refused before anything is allocated.",
        advice="Raise it for models larger than 1 TiB; lower it on sites that must bound the "
        "memory a peer can make them allocate.",
        minimum=1,
    ),
    Setting(
        name="runtime.task_timeout",
        type=float,
        default=3600.0,
        unit="seconds",
        bounds="How long the server waits for one site's result of one task (a training "
        "round, a validation). A site past it is left out of that round; if fewer than "
        "min_clients answered, the job fails with the names of the late sites.",
        advice="Raise it when local training legitimately takes longer than an hour per round; "
        "lower it to fail fast in tests.",
        minimum=0.001,
        symptom="A site listed under `timed_out` in round_metrics.jsonl and left out of the "
        "round; or the job fails with `task 'train' needs results from min_clients=N sites, "
        "only M can answer; timed out: site-2 (runtime.task_timeout = 3600 s (default))`.",
        scenarios=("large models", "slow sites", "edge devices", "production"),
    ),
    Setting(
        name="runtime.task_poll_interval",
        type=float,
        default=5.0,
        unit="seconds",
        bounds="How long one task request from a site waits at the server before the site "
        "asks again (a long poll; a new task or the job's end answers at once).",
        advice="Rarely: lower it if proxies drop idle requests sooner.",
        minimum=0.001,
        scenarios=("many sites", "production"),
    ),
    Setting(
        name="runtime.site_stop_timeout",
        type=float,
        default=10.0,
        unit="seconds",
        bounds="How long a job waits, once it ended, for the sites' scripts to return; "
        "subprocess scripts still running then are terminated, then killed.",
        advice="Raise it if scripts do long clean-up after their last task.",
        minimum=0.0,
        symptom="`site site-1's script did not return within runtime.site_stop_timeout = 10 s "
        "(default) after the job ended` in the server's log; a subprocess script is then "
        "terminated.",
        scenarios=("slow sites",),
    ),
    Setting(
        name="runtime.checkpoint",
        type=bool,
        default=True,
        unit="flag",
        bounds="Whether resumable workflows (FedAvg and those built on it, Cyclic) checkpoint "
        "each completed round in the job's server folder (checkpoint/: the global model as "
        "safetensors and the workflow's state), so a job resumes after a server crash "
        "(docs/reliability.md).",
        advice="Turn it off to save one sequential write of the model per round when a job "
        "need not survive a crash.",
    ),
    Setting(
        name="runtime.subprocess_connect_timeout",
        type=float,
        default=60.0,
        unit="seconds",
        bounds="How long a site waits for its script, launched as a subprocess, to call "
        "flare.init() and connect; a script that does not is killed and the site fails.",
        advice="Raise it for scripts whose imports take longer than a minute (large frameworks "
        "on slow disks).",
        minimum=0.001,
        symptom="A site fails with `train.py did not connect within "
        "runtime.subprocess_connect_timeout = 60 s (default)`.",
        scenarios=("slow sites", "edge devices"),
    ),
    Setting(
        name="sim.serialize_messages",
        type=bool,
        default=True,
        unit="flag",
        bounds="Whether SimEnv passes every message through FOBS, as a networked env would.",
        advice="Leave it on: it catches unserializable params in simulation. Off saves an "
        "encode and decode per message: about 30% of the CPU time of a 1000-site job with a "
        "tiny model (benchmarks/sim_overhead.py).",
    ),
    Setting(
        name="streaming.enabled",
        type=bool,
        default=True,
        unit="flag",
        bounds="Whether arrays of at least streaming.min_tensor_bytes travel by download "
        "(the message carries a reference; the receiver pulls the tensor in chunks).",
        advice="Turn it off only to compare; results are identical either way.",
    ),
    Setting(
        name="streaming.inprocess_direct",
        type=bool,
        default=True,
        unit="flag",
        bounds="Whether a receiver in the same process as the owner (SimEnv) takes a streamed "
        "tensor straight from the owner's memory (the array itself when it is the last "
        "receiver and nothing else holds it, else one copy, or a read-only view for an "
        "aggregator) instead of pulling checked chunks.",
        advice="Turn it off to exercise the chunked path in a simulation.",
    ),
    Setting(
        name="streaming.min_tensor_bytes",
        type=int,
        default=1 << 20,
        unit="bytes",
        bounds="Arrays this large or larger are offered for download instead of being copied "
        "into the message.",
        advice="Lower it to stream smaller layers too; raise it for models of many small "
        "arrays where per-tensor requests cost more than the copies.",
        minimum=1,
    ),
    Setting(
        name="streaming.chunk_size",
        type=int,
        default=2 << 20,
        unit="bytes",
        bounds="How much one download request pulls; each chunk carries a CRC-32.",
        advice="Raise it on fast links with high latency; lower it where one request must stay "
        "small.",
        minimum=1024,
        scenarios=("large models",),
    ),
    Setting(
        name="streaming.chunks_in_flight",
        type=int,
        default=4,
        unit="requests",
        bounds="How many chunk requests of one item a receiver keeps in flight; chunks are still "
        "written in order, each checked by its CRC.",
        advice="Raise it on links with high latency; 1 pulls one chunk at a time.",
        minimum=1,
    ),
    Setting(
        name="streaming.per_request_timeout",
        type=float,
        default=60.0,
        unit="seconds",
        bounds="How long one download request (one chunk) may take before it is retried.",
        advice="Raise it on very slow links or with very large chunks.",
        minimum=0.001,
        symptom="`... gave up on stream.chunk REF from OWNER after 4 attempts "
        "(streaming.max_retries = 3 retries (default); a request's limit: "
        "streaming.per_request_timeout = 60 s (default)): TimeoutError: ...`.",
        scenarios=("large models", "slow sites", "edge devices"),
    ),
    Setting(
        name="streaming.max_retries",
        type=int,
        default=3,
        unit="retries",
        bounds="How often a failed or corrupt chunk is requested again before the download "
        "fails with the reasons.",
        advice="Raise it on flaky links.",
        minimum=0,
        symptom="`... gave up on stream.chunk REF from OWNER after 4 attempts "
        "(streaming.max_retries = 3 retries (default); ...): ...`.",
        scenarios=("edge devices", "production"),
    ),
    Setting(
        name="streaming.transaction_timeout",
        type=float,
        default=3600.0,
        unit="seconds",
        bounds="How long offered data waits, idle, for its receivers; then it is dropped and a "
        "late pull fails with that reason. A site's result waits here until the server "
        "aggregates it.",
        advice="Keep it at least runtime.task_timeout, so results of slow rounds are not "
        "dropped before the server pulls them.",
        minimum=0.001,
        symptom="A pull fails with `... expired after 3600 s without a pull "
        "(streaming.transaction_timeout = 3600 s (default)); 1 receiver(s) had not finished`; "
        "a slow round's results are dropped before the server pulls them.",
        scenarios=("large models", "slow sites", "many sites"),
        at_least=("runtime.task_timeout",),
    ),
    Setting(
        name="streaming.offload_dir",
        type=str,
        default="",
        unit="path",
        bounds="When set, the server keeps models on disk here, in safetensors files: the "
        "global model it sends while the sites pull it (FedAvg and the recipes built on it, "
        "numpy params), and each site's result from its arrival until aggregation (empty: "
        "models stay in memory, results wait at their sites). An absolute path gets one "
        "folder per job; a relative one is under the job's server folder (what a recipe's "
        "enable_tensor_disk_offload sets).",
        advice="Set it for very large models, on a disk with room for one model per site "
        "plus one; with SimEnv(num_threads=1) an in-process simulation then holds about 2x "
        "the model.",
        scenarios=("large models",),
    ),
    Setting(
        name="streaming.recycle_mib",
        type=int,
        default=1024,
        unit="MiB",
        bounds="How much idle memory a process keeps for the next tensors it receives: the "
        "memory of a received array (1 MiB or more) is reused for the next one of the same "
        "size once the array and its views are gone, instead of fresh memory the kernel "
        "must zero first. 0: every tensor gets fresh memory.",
        advice="Raise it to about one model for large models received every round (a site "
        "that drops the previous model before the next arrives reuses all of it); lower it "
        "where idle memory between rounds matters more than download speed.",
        minimum=0,
        scenarios=("large models",),
    ),
    Setting(
        name="net.connect_timeout",
        type=float,
        default=30.0,
        unit="seconds",
        bounds="How long a node tries to reach and register with its hub when it starts (an "
        "unreachable hub is tried again with backoff meanwhile), how long one reconnect "
        "attempt may take, and how long a request made while the node is reconnecting waits "
        "for the connection before failing.",
        advice="Raise it when sites may start well before the server; lower it to fail fast "
        "in tests.",
        minimum=0.001,
        symptom="A node fails to start with `... (tried for net.connect_timeout = 30 s "
        "(default))` (a job process: `system.start_timeout`), or requests made while it "
        "reconnects fail.",
        scenarios=("edge devices", "production"),
    ),
    Setting(
        name="net.heartbeat_interval",
        type=float,
        default=15.0,
        unit="seconds",
        bounds="A connection on which nothing arrived for this long is declared dead and "
        "closed: requests waiting on it fail and the node reconnects. Each side pings every "
        "third of it, so a live idle connection is never silent that long.",
        advice="Lower it to notice dead peers sooner (more pings); raise it on links that "
        "stall for long stretches.",
        minimum=0.01,
        symptom="Connections closed with `no message from the hub for 15.2 s "
        "(net.heartbeat_interval=15)`; requests waiting on them fail and the node reconnects.",
        scenarios=("edge devices", "production"),
    ),
    Setting(
        name="net.reconnect_backoff_min",
        type=float,
        default=0.1,
        unit="seconds",
        bounds="The first wait before a node dials its hub again after losing it; each failed "
        "attempt doubles the wait, up to net.reconnect_backoff_max.",
        advice="Rarely changed.",
        minimum=0.001,
    ),
    Setting(
        name="net.reconnect_backoff_max",
        type=float,
        default=10.0,
        unit="seconds",
        bounds="The longest wait between a node's attempts to reach its hub again.",
        advice="Raise it for thousands of nodes, so a restarted server is not hit by all of "
        "them at once; lower it for faster recovery of a few.",
        minimum=0.001,
        scenarios=("many sites", "production"),
    ),
    Setting(
        name="net.fragment_size",
        type=int,
        default=4 << 20,
        unit="bytes",
        bounds="The largest gRPC message: a larger frame is sent in several fragments and "
        "reassembled (message sizes are otherwise unlimited). Fragments of different "
        "messages take turns on a connection, so small messages never wait behind a large "
        "one for more than a fragment.",
        advice="Keep it above streaming.chunk_size, so a chunk travels in one message without "
        "a copy; lower it on slow links where heartbeats must not wait long.",
        minimum=16 * 1024,
        scenarios=("large models",),
    ),
    Setting(
        name="tunnel.call_timeout",
        type=float,
        default=600.0,
        unit="seconds",
        bounds="How long one tunnelled call (an XGBoost collective, a Flower Fleet request) may "
        "take from the site's endpoint to the service behind the server and back. A "
        "collective waits for the slowest site's local work, so this bounds a round's slowest "
        "step, not the round.",
        advice="Raise it when one boosting round legitimately takes longer than 10 minutes at "
        "a site; a dead site ends the job at once regardless (the server sees it go).",
        minimum=0.01,
        symptom="A local client at a site fails with UNAVAILABLE: 'call N did not finish "
        "within tunnel.call_timeout = ...'.",
        scenarios=("slow sites", "large models"),
    ),
    Setting(
        name="tunnel.retries",
        type=int,
        default=3,
        unit="resends",
        bounds="How many times a site resends a tunnelled call after its Ember request failed "
        "(a broken connection); the server answers a resent call from its record, so a call "
        "is never made twice.",
        advice="Raise it on flaky networks between sites and the server.",
        minimum=0,
    ),
    Setting(
        name="net.max_message_bytes",
        type=int,
        default=1 << 30,
        unit="bytes",
        bounds="The largest message a hub or node accepts from one connection (all its "
        "fragments together); a fragment that would take a message past it closes the "
        "connection before it is kept. Large models are not bound by it: arrays of at least "
        "streaming.min_tensor_bytes travel as separate chunks.",
        advice="Raise it only when large values travel inline (streaming.enabled=False).",
        minimum=1024,
        scenarios=("large models", "production"),
    ),
    Setting(
        name="net.max_partial_messages",
        type=int,
        default=64,
        unit="messages",
        bounds="How many fragmented messages one connection may have unfinished at once; one "
        "more closes the connection.",
        advice="Raise it only if many large messages legitimately interleave on one connection.",
        minimum=1,
    ),
    Setting(
        name="net.max_partial_bytes",
        type=int,
        default=2 << 30,
        unit="bytes",
        bounds="How many bytes of unfinished fragmented messages one connection may make a "
        "hub or node hold; more closes the connection (and frees what it held).",
        advice="Keep it at least net.max_message_bytes.",
        minimum=1024,
        scenarios=("production",),
    ),
    Setting(
        name="net.partial_message_timeout",
        type=float,
        default=300.0,
        unit="seconds",
        bounds="How long a fragmented message may take to finish arriving; a connection "
        "holding an older unfinished one is closed.",
        advice="Raise it on very slow links that send messages of many fragments.",
        minimum=0.01,
        symptom="A connection closed with 'a fragmented message was not finished within "
        "net.partial_message_timeout = ...' in the hub's or node's log.",
        scenarios=("large models", "production"),
    ),
    Setting(
        name="net.handshake_timeout",
        type=float,
        default=10.0,
        unit="seconds",
        bounds="How long a hub waits for a new connection's TLS/HTTP2 handshake "
        "(gRPC's grpc.server_handshake_timeout_ms; its own default is 120 s); a connection "
        "that sends nothing, or half a header, is dropped after it.",
        advice="Raise it only for links so slow that a handshake takes longer.",
        minimum=0.1,
        symptom="Connections from a far or slow peer dropped before they register; the hub "
        "logs refused connections from that address.",
        scenarios=("production",),
    ),
    Setting(
        name="net.idle_connection_timeout",
        type=float,
        default=60.0,
        unit="seconds",
        bounds="How long a hub keeps a connection that carries no call (gRPC's "
        "grpc.max_connection_idle_ms); a registered node always has one, so only "
        "connections that never registered are closed by it.",
        advice="Raise it if tools keep idle connections to the hub on purpose.",
        minimum=1.0,
        symptom="A tool holding a connection to the hub without registering finds it closed "
        "after a minute.",
        scenarios=("production",),
    ),
    Setting(
        name="system.start_refused_tries",
        type=int,
        default=3,
        unit="tries",
        bounds="How many times a client daemon (`ember daemon start`) dials a hub that refuses "
        "it for good (its certificate refused, from another CA, expired; a security "
        "mismatch) before it exits non-zero with the reason. An unreachable hub is dialled "
        "again with back-off until the daemon is stopped.",
        advice="Raise it if the hub's certificates are being rotated while sites start.",
        minimum=1,
        scenarios=("production",),
    ),
    Setting(
        name="net.handler_threads",
        type=int,
        default=256,
        unit="threads",
        bounds="How many requests a node (or the hub) handles at once; more wait in a queue. "
        "A long-polling request (a site waiting for its next task) holds one while it waits.",
        advice="Raise it on a server with more sites than this (each polls for tasks).",
        minimum=1,
        scenarios=("many sites",),
    ),
    Setting(
        name="net.hub_max_connections",
        type=int,
        default=4096,
        unit="connections",
        bounds="How many nodes a hub serves at once (each connection holds a thread); more "
        "are refused with a clear error.",
        advice="Raise it for very large federations.",
        minimum=1,
        scenarios=("many sites", "production"),
    ),
    Setting(
        name="net.hub_max_incoming_connections",
        type=int,
        default=8192,
        unit="connections",
        bounds="How many TCP connections a hub's port holds at once, in their TLS/HTTP2 "
        "handshake or serving a node (gRPC's grpc.max_allowed_incoming_connections); one "
        "more is closed as soon as it is accepted, before any TLS work. It counts all "
        "sources together: gRPC offers no per-address limit (docs/security.md shows a "
        "firewall rule for that).",
        advice="Keep it above net.hub_max_connections plus the connections you expect in "
        "their handshake at once; raise it with net.hub_max_connections.",
        minimum=1,
        symptom="Nodes fail to connect ('Connection reset by peer' or 'Socket closed') while "
        "many connections are open to the hub, and the hub logs nothing about them.",
        scenarios=("many sites", "production"),
        at_least=("net.hub_max_connections",),
    ),
    Setting(
        name="net.data_links",
        type=bool,
        default=True,
        unit="flag",
        bounds="Whether a site's job process moves large downloads (the global model, its "
        "results) over its own TLS connections to the server's job process instead of "
        "through the hub: the site dials out (it opens no port); the server's job process "
        "listens on a port of net.data_link_ports. Anything a link cannot do goes through "
        "the hub, with the same result. Never with connection security 'clear'.",
        advice="Turn it off where sites may reach the server's hub port only; then every "
        "byte goes through the hub (3-4x slower for large models on the test machine).",
        scenarios=("large models", "production"),
    ),
    Setting(
        name="net.data_link_ports",
        type=str,
        default="",
        unit="port range",
        bounds="The ports a server's job process may listen on for data links, as "
        "'41000-41099' or one port (empty: any free port). With none free, that job's "
        "downloads go through the hub.",
        advice="Set it on a server behind a firewall, to a range opened to the sites, with "
        "one port per job that may run at once.",
        scenarios=("production",),
    ),
    Setting(
        name="net.data_link_connections",
        type=int,
        default=2,
        unit="connections",
        bounds="How many data link connections a site's job process keeps each way: it pulls "
        "on up to this many at once, and opens this many on which the server pulls from it. "
        "A pull that finds them all busy goes through the hub.",
        advice="Raise it when a job pulls many tensors from one peer at once.",
        minimum=1,
    ),
    Setting(
        name="logs.stream",
        type=bool,
        default=False,
        unit="flag",
        bounds="Whether each site streams the files named by logs.stream_files and its "
        "scripts' output to the server while the job runs, in order (what a recipe's "
        "enable_log_streaming sets). The server keeps them under server/site_logs/<site>/; "
        "`ember job logs ID --site S --follow` and the SimEnv console show them.",
        advice="Turn it on to watch sites live from the server; leave it off when sites must "
        "not send their logs anywhere.",
        scenarios=("production",),
    ),
    Setting(
        name="logs.stream_files",
        type=str,
        default="log.txt",
        unit="file names",
        bounds="Comma-separated names of a site's files (in its job folder) that "
        "logs.stream sends; the scripts' output always goes with them.",
        advice="Add the files your scripts write (`log.txt,train.log`).",
    ),
    Setting(
        name="logs.stream_interval",
        type=float,
        default=0.5,
        unit="seconds",
        bounds="How often a site sends the lines its streamed files and scripts gained; "
        "lines wait at most this long (a batch that fails is sent again, in order).",
        advice="Raise it for thousands of sites (fewer, larger messages); lower it to see "
        "lines sooner.",
        minimum=0.01,
        scenarios=("many sites",),
    ),
    Setting(
        name="sim.script_threads",
        type=int,
        default=32,
        unit="sites",
        bounds="Up to this many sites, each site's script of a SimEnv job (backend 'threads', "
        "scripts in process) has a thread of its own. With more, the scripts share a few "
        "carrier threads (sim.carrier_threads), each running many sites' scripts as "
        "greenlets that hand the thread on whenever a script waits in the Client API (for "
        "its next task, for a work slot): no thread stack per site, no system call per "
        "wake-up. A job whose site workflow has sites wait for each other (swarm, XGBoost, "
        "Flower) gives each site a thread whatever its size. 0: a thread per site always.",
        advice="Set it above the job's number of sites (or 0) when the sites' scripts wait "
        "for each other outside the Client API.",
        minimum=0,
        scenarios=("many sites",),
    ),
    Setting(
        name="sim.carrier_threads",
        type=int,
        default=0,
        unit="threads",
        bounds="How many carrier threads run the scripts of a SimEnv job with more sites than "
        "sim.script_threads; up to this many sites compute at once. 0: one per CPU this "
        "process may use (its CPU affinity): more threads than cores only take turns at the "
        "GIL (10,000 sites of a 10-float job on 2 cores: 20 s on 2 carriers, 30 s on 4 or "
        "32).",
        advice="Raise it when the sites' scripts block outside the Client API (sleep, their "
        "own I/O) and hold up the other scripts of their carrier.",
        minimum=0,
        symptom="A job of many sites whose scripts sleep or wait on their own I/O runs "
        "rounds at the pace of one script per carrier thread.",
        scenarios=("many sites",),
    ),
    Setting(
        name="sim.shared_site_logs",
        type=int,
        default=100,
        unit="sites",
        bounds="Up to this many sites, each site of a SimEnv job (backend 'threads') writes "
        "its log records and its scripts' output to its own folder's log.txt and log.jsonl. "
        "With more, every site writes to one pair of files, sites/log.txt and "
        "sites/log.jsonl in the job's workspace (each record names its site), and a site's "
        "folder is made only when something is written there (its script asks for its "
        "config, a site workflow, client-side tracking, a subprocess script): a folder per "
        "site costs the file system about a millisecond, 10 s for 10,000 sites. A job that "
        "streams its sites' logs (logs.stream) keeps a log per site. 0: always one pair.",
        advice="Raise it above the job's number of sites to get one log per site folder; "
        "`grep ' site-7: ' sites/log.txt` reads one site's records from the shared one.",
        minimum=0,
        scenarios=("many sites",),
    ),
    Setting(
        name="sim.progress",
        type=str,
        default="auto",
        unit="mode",
        bounds="SimEnv's progress display: 'auto' (a live display at the bottom of a terminal, "
        "plain lines when output is not a terminal), 'plain' (one line per event), 'off'. "
        "SimEnv(progress=False) is 'off'.",
        advice="'off' for scripts whose own output must stay alone on stdout.",
    ),
    Setting(
        name="sim.memory_budget",
        type=float,
        default=0.5,
        unit="fraction or bytes",
        bounds="The memory SimEnv's process should stay under: at most 1, that fraction of the "
        "memory available when the job starts (MemAvailable, or the cgroup's memory.max / "
        "memory.limit_in_bytes less its usage when smaller), on top of what the process "
        "holds then; above 1, bytes; 0 turns it off. SimEnv caps how many sites train at "
        "once (in threads) from each site's footprint (the model's size, then what sites "
        "hold), and keeps the server's models on disk when even one at a time would not fit; "
        "a job that needs every site at once and cannot fit is refused at start. "
        "SimEnv(memory_budget=...) overrides it.",
        advice="Raise it (or give bytes) when the machine runs nothing else and sites wait "
        "for each other needlessly; lower it when other processes need the memory; 0 to "
        "schedule sites by num_threads alone.",
        minimum=0.0,
        symptom="`memory: ... at most 1 site(s) train at once` in the server's log of a job "
        "that used to train every site at once; or `job 'x' needs all 4 sites training at "
        "once ... over the memory budget` when a job starts.",
        scenarios=("large models", "many sites"),
    ),
]
