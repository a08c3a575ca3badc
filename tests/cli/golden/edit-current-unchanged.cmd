# fixture=vm1 env=EDITOR=$TMP/ed-none
snapshot-edit vm1 base --current; snapshot-current vm1 --name
