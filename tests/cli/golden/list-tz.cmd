# fixture=vm1 env=TZ=America/New_York
snapshot-list vm1
