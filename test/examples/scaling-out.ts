import { Module } from '@nestjs/common';
import { PoolModule } from 'nestjs-pg-pool';

@Module({
  imports: [
    // #region pgbouncer
    PoolModule.forRoot({ connectionString: process.env.PGBOUNCER_URL, max: 20, transactionPooling: true }),
    // #endregion pgbouncer
  ],
})
export class PgBouncerAppModule {}

@Module({
  imports: [
    // #region replicas
    PoolModule.forRoot({
      connectionString: process.env.DATABASE_URL,
      replicas: [{ connectionString: process.env.REPLICA_URL }],
      replicaRetryMillis: 5000,
    }),
    // #endregion replicas
  ],
})
export class ReplicasAppModule {}
