from ml_cloud_optimizer.cli import main

raise SystemExit(main())
