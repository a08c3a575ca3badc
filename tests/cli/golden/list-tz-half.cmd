# fixture=vm1 env=TZ=Asia/Kolkata
snapshot-list vm1 --roots
