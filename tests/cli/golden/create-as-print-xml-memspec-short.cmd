# fixture=test
snapshot-create-as test s1 --print-xml --memspec /var/lib/qsnap/s1.mem
