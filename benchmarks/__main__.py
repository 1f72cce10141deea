"""``python -m benchmarks``: see benchmarks/README.md."""
if __name__ == "__main__":  # spawned workers import this module too; they must not rerun the benchmarks
    from benchmarks.harness import main
    main()
