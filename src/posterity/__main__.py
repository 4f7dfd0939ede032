from posterity.cli.main import main

main()
