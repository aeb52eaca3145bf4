from deltaflow.cli import main

main()
