from omtasks.cli import main

main()
