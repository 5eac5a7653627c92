from cpagent.cli import main

raise SystemExit(main())
