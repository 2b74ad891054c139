from ecgmoe_cli.cli import main

main()
