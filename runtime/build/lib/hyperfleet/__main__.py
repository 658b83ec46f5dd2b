from hyperfleet.cli import main

main(prog_name="hyperfleet")
