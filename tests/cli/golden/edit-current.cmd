# fixture=vm1 env=EDITOR=$TMP/ed-desc
snapshot-edit vm1 base --current; snapshot-current vm1 --name
