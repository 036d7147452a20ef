from stages.search.evaluation import main

raise SystemExit(main())
