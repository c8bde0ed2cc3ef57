import { Module } from '@nestjs/common';
import { PoolModule } from 'nestjs-pg-pool';

@Module({
  imports: [
    // #region options
    // Writes go to whichever of db1 and db2 is the primary now.
    PoolModule.forRoot({
      connectionString: 'postgres://app:secret@db1:5432,db2:5432/app?target_session_attrs=read-write',
    }),
    // Given as options: reads on a standby, on either host if no standby answers.
    PoolModule.forRoot({
      name: 'reports',
      host: 'db1:5432,db2:5432',
      targetSessionAttrs: 'prefer-standby',
      loadBalanceHosts: 'random',
      user: 'app',
      database: 'app',
    }),
    // #endregion options
  ],
})
export class AppModule {}
