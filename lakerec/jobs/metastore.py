"""Start, stop or show the lake's catalog server (Derby on loopback; see lakerec.metastore).

    python -m lakerec.jobs.metastore status --lake lake
    python -m lakerec.jobs.metastore stop --lake lake     # before moving or deleting a lake
    python -m lakerec.jobs.metastore start --lake lake    # jobs start it themselves when needed

Prints one line: the server's address and process, or that none runs.
"""

from __future__ import annotations

from lakerec import cli, metastore


def main(argv: list[str] | None = None) -> None:
    p = cli.parser("metastore", "Start, stop or show the lake's catalog server (Derby on loopback).",
                   lake="none")  # its own checks: `status` of a lake with no catalog yet is an answer
    p.add_argument("action", choices=("start", "stop", "status"))
    args = p.parse_args(argv)

    def body():
        lake = cli.config_from_args(args).lake_path
        if args.action == "start":
            server = metastore.ensure(lake)
        elif args.action == "stop":
            server = metastore.stop(lake)
            print(f"stopped the catalog server of {lake} (pid {server.pid})" if server
                  else f"no catalog server runs for {lake}")
            return
        else:
            server = metastore.running(lake) if lake.is_dir() else None
            if server is None:
                print(f"no catalog server runs for {lake}")
                return
        print(f"catalog server of {lake}: {server.url.split(';')[0]} (pid {server.pid})")

    cli.run_main("metastore", body)


if __name__ == "__main__":
    main()
